package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// firstMessageTimeout bounds the wait for a new session's full set.
const firstMessageTimeout = 10 * time.Second

var errNoSession = errors.New("no session with a manager")

// peers are the managers the agent may talk to: those the last session
// named, best weight first, then the --join addresses, tried in turn.
type peers struct {
	mu    sync.Mutex
	join  []string
	named []string
	i     int
	cur   string
	hint  string
	// save, if set, records a changed list of named managers.
	save func([]string)
}

func newPeers(join []string) *peers {
	p := &peers{join: slices.Clone(join)}
	if len(join) > 0 {
		p.cur = join[0]
	}
	return p
}

// next returns the manager to try next: one a manager named as the leader,
// else the one after the last tried.
func (p *peers) next() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hint != "" {
		p.cur, p.hint = p.hint, ""
		return p.cur
	}
	all := p.all()
	if len(all) == 0 {
		return ""
	}
	p.cur = all[p.i%len(all)]
	p.i++
	return p.cur
}

func (p *peers) all() []string {
	out := slices.Clone(p.named)
	for _, a := range p.join {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// list returns every known manager: those the last session named, then
// the --join addresses.
func (p *peers) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.all()
}

// current is the manager of the session, or the last one tried.
func (p *peers) current() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur
}

// update takes the managers a session named.
func (p *peers) update(ms []*pb.WeightedPeer) {
	if len(ms) == 0 {
		return
	}
	sorted := slices.Clone(ms)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].GetWeight() > sorted[j].GetWeight() })
	var addrs []string
	for _, m := range sorted {
		if m.GetAddr() != "" && !slices.Contains(addrs, m.GetAddr()) {
			addrs = append(addrs, m.GetAddr())
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if !slices.Equal(addrs, p.named) {
		p.named, p.i = addrs, 0
		if k := slices.Index(p.all(), p.cur); k >= 0 {
			p.i = k + 1 // after a failure, try the one after the current first
		}
		if p.save != nil {
			p.save(addrs)
		}
	}
}

// leader remembers a leader address a manager pointed to.
func (p *peers) leader(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hint = addr
}

// link is the current session, for the status reporter.
type link struct {
	mu      sync.Mutex
	client  pb.DispatcherClient
	session string
}

func (l *link) set(c pb.DispatcherClient, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.client, l.session = c, id
}

func (l *link) get() (pb.DispatcherClient, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.client, l.session, l.client != nil
}

// sendStatuses is the reporter's way out: the current session's
// UpdateTaskStatus.
func (a *Agent) sendStatuses(ctx context.Context, updates []*pb.TaskStatusUpdate) error {
	client, sid, ok := a.link.get()
	if !ok {
		return errNoSession
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	_, err := client.UpdateTaskStatus(ctx, &pb.UpdateTaskStatusRequest{SessionId: sid, Updates: updates})
	return err
}

// sessions keeps one session with a manager until ctx ends, moving to the
// next known manager with backoff whenever the session breaks.
func (a *Agent) sessions(ctx context.Context) error {
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	for {
		addr := a.peers.next()
		established, err := a.session(ctx, addr)
		if ctx.Err() != nil {
			return nil
		}
		if established {
			b.reset()
		}
		if leader := leaderHint(err); leader != "" && leader != addr {
			a.peers.leader(leader)
		}
		a.log.Warn("session with manager ended; reconnecting", "manager", addr, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(b.next()):
		}
	}
}

// leaderHint reads a leader address a manager attached to its refusal as
// a WeightedPeer status detail.
func leaderHint(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return ""
	}
	for _, d := range st.Details() {
		if p, ok := d.(*pb.WeightedPeer); ok {
			return p.GetAddr()
		}
	}
	return ""
}

// session runs one session with the manager at addr: it registers the
// node, applies the assignments streamed back and sends heartbeats until
// either fails. established says the manager accepted the session.
func (a *Agent) session(ctx context.Context, addr string) (established bool, err error) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(a.creds.ClientConfig())))
	if err != nil {
		return false, fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	client := pb.NewDispatcherClient(conn)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	g, gctx := errgroup.WithContext(sctx)
	stream, err := client.Session(gctx, &pb.SessionRequest{Description: a.describe(addr), SessionId: a.lastSession})
	if err != nil {
		return false, fmt.Errorf("open session: %w", err)
	}
	timer := time.AfterFunc(firstMessageTimeout, cancel)
	first, err := stream.Recv()
	timer.Stop()
	if err != nil {
		return false, fmt.Errorf("open session: %w", err)
	}
	// The heartbeat period is the cluster's, told by the manager: the
	// agent keeps no default of its own.
	if !first.GetFull() || first.GetSessionId() == "" || first.GetHeartbeatPeriod().AsDuration() <= 0 {
		return false, fmt.Errorf("open session: the manager's first message is not a full assignment set with a session ID and a heartbeat period")
	}
	var period atomic.Int64
	period.Store(int64(first.GetHeartbeatPeriod().AsDuration()))
	if err := a.apply(ctx, first, &period); err != nil {
		return false, err
	}
	sid := first.GetSessionId()
	a.lastSession = sid
	a.link.set(client, sid)
	defer a.link.set(nil, "")
	a.log.Info("session established", "manager", addr, "session", sid, "node", first.GetNodeId(), "tasks", len(first.GetChanges()))
	reqs := newRequests(client, sid, a.rt, assignedContainers{w: a.worker, exec: a.worker.env.exec}, a.log)
	defer reqs.stop()
	g.Go(func() error { return a.heartbeats(gctx, client, sid, &period) })
	g.Go(func() error {
		for {
			msg, err := stream.Recv()
			if err != nil {
				return fmt.Errorf("session stream: %w", err)
			}
			reqs.handle(gctx, msg.GetRequests())
			if err := a.apply(gctx, msg, &period); err != nil {
				return err
			}
		}
	})
	return true, g.Wait()
}

// apply takes a session message: settings, then assignments.
func (a *Agent) apply(ctx context.Context, msg *pb.SessionMessage, period *atomic.Int64) error {
	if id := msg.GetNodeId(); id != "" && id != a.creds.Identity().NodeID {
		a.log.Warn("the manager knows this node by another ID than its certificate", "session_node", id, "certificate_node", a.creds.Identity().NodeID)
	}
	a.setPeriod(period, msg.GetHeartbeatPeriod().AsDuration())
	a.peers.update(msg.GetManagers())
	if msg.GetFull() || len(msg.GetInsecureRegistries()) > 0 {
		a.setInsecure(msg.GetInsecureRegistries())
	}
	if a.cfg.OnGossip != nil && (len(msg.GetGossipKey()) > 0 || len(msg.GetGossipPeers()) > 0) {
		a.cfg.OnGossip(msg.GetGossipKey(), msg.GetGossipAcceptKeys(), msg.GetGossipPeers())
	}
	if a.cfg.OnDesiredRole != nil && msg.DesiredRole != nil {
		a.cfg.OnDesiredRole(msg.GetDesiredRole())
	}
	if !msg.GetFull() && len(msg.GetChanges()) == 0 {
		return nil
	}
	return a.worker.Assign(ctx, msg.GetFull(), msg.GetChanges())
}

// setInsecure merges the cluster's plain-HTTP registries with the agent's.
func (a *Agent) setInsecure(cluster []string) {
	regs := slices.Clone(a.cfg.InsecureRegistries)
	for _, r := range cluster {
		if !slices.Contains(regs, r) {
			regs = append(regs, r)
		}
	}
	a.images.SetInsecure(regs)
}

// setPeriod takes the heartbeat period a manager named (none when d is 0);
// a change is logged, as operators change it (berth cluster update).
func (a *Agent) setPeriod(period *atomic.Int64, d time.Duration) {
	if d <= 0 {
		return
	}
	if old := time.Duration(period.Swap(int64(d))); old != d {
		a.log.Info("heartbeat period changed", "period", d, "was", old)
	}
}

// heartbeats keeps the session alive at the period the manager sets.
func (a *Agent) heartbeats(ctx context.Context, client pb.DispatcherClient, sid string, period *atomic.Int64) error {
	for {
		p := time.Duration(period.Load())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(p):
		}
		hctx, cancel := context.WithTimeout(ctx, max(p, time.Second))
		resp, err := client.Heartbeat(hctx, &pb.HeartbeatRequest{SessionId: sid})
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("heartbeat: %w", err)
		}
		a.setPeriod(period, resp.GetPeriod().AsDuration())
	}
}
