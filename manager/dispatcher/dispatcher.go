package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/manager/admit"
	"berth/manager/mux"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// Defaults for Config.
const (
	DefaultHeartbeatPeriod = time.Second
	DefaultHeartbeatGrace  = 3
	DefaultBatchWindow     = 50 * time.Millisecond
)

// Down messages written into a node's status.
const (
	ReasonHeartbeat    = "heartbeat failure"
	ReasonSessionEnded = "session ended"
)

// Config assembles a Dispatcher. Store and OpenSecret are required; every
// func may be nil (nil means none, or: this manager leads).
type Config struct {
	Store *store.MemoryStore
	Now   func() time.Time
	Log   *slog.Logger
	// HeartbeatPeriod returns the period agents are told to heartbeat at:
	// the cluster spec's heartbeat_period, read anew at every session
	// message and heartbeat, so a change reaches each agent at its next
	// heartbeat. Nil or a result <= 0 means DefaultHeartbeatPeriod.
	HeartbeatPeriod func() time.Duration
	// HeartbeatGrace is how many periods without a heartbeat (or without a
	// session, after a stream ended) put a node down; default 3.
	HeartbeatGrace int
	// BatchWindow is how long changes are coalesced: store events into
	// one session message, status reports into one store write.
	BatchWindow time.Duration
	// Managers are the addresses agents may fail over to.
	Managers func() []*pb.WeightedPeer
	// IsLeader and LeaderAddr drive the redirect of followers.
	IsLeader   func() bool
	LeaderAddr func() (nodeID, addr string)
	// Cluster settings handed to agents. GossipKeys returns the key nodes
	// encrypt gossip with and the others they accept while it rotates.
	InsecureRegistries func() []string
	GossipKeys         func() (primary []byte, accept [][]byte)
	GossipPeers        func() []string
	// OpenSecret decrypts a Secret's sealed spec.data.
	OpenSecret func(sealed []byte) ([]byte, error)
	// Identify returns the caller's verified identity; it defaults to the
	// TLS peer certificate (mux.PeerIdentity). Tests without TLS set it.
	Identify func(ctx context.Context) (ca.Identity, error)
	// OnHeartbeat, if set, is called for each heartbeat of a live session
	// (for metrics); it must not block.
	OnHeartbeat func()
}

// Dispatcher implements pb.DispatcherServer. Its sessions live only while
// Run runs.
type Dispatcher struct {
	pb.UnimplementedDispatcherServer
	cfg   Config
	log   *slog.Logger
	calls *calls

	mu   sync.Mutex
	term *term // nil unless Run runs

	// attachMu makes AttachNetwork's read-then-create one at a time, so
	// an agent's retry racing its first call finds that call's attachment.
	// Its write skips the batch window: a container waits on it to start.
	attachMu sync.Mutex
}

// term is one run of Run: the leader's sessions and its write queue.
type term struct {
	done   chan struct{} // closed when Run returns
	quit   chan struct{} // closed when the writer stops
	writes chan *write
	nodes  map[string]*nodeRec
}

// nodeRec is what the leader knows of one node's liveness.
type nodeRec struct {
	sid      string // the live session; "" after its stream ended
	deadline time.Time
	end      context.CancelCauseFunc // ends the live session's stream
	reason   string                  // the down message if the deadline passes
	heard    time.Time               // the last heartbeat or session start
	// reqs carries AgentRequests to the live session's stream; gone is
	// closed when that stream ends.
	reqs chan *pb.AgentRequest
	gone <-chan struct{}
}

// New returns a Dispatcher; Run serves it.
func New(cfg Config) *Dispatcher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.HeartbeatGrace <= 0 {
		cfg.HeartbeatGrace = DefaultHeartbeatGrace
	}
	if cfg.BatchWindow <= 0 {
		cfg.BatchWindow = DefaultBatchWindow
	}
	if cfg.Identify == nil {
		cfg.Identify = peerIdentity
	}
	return &Dispatcher{cfg: cfg, log: cfg.Log, calls: &calls{m: map[string]*call{}}}
}

func peerIdentity(ctx context.Context) (ca.Identity, error) {
	id, ok := mux.PeerIdentity(ctx)
	if !ok {
		return ca.Identity{}, status.Error(codes.Unauthenticated, "no node certificate of this cluster: an agent must join first (berth-agent --join ... --token ...)")
	}
	return id, nil
}

// period is the heartbeat period agents are told now.
func (d *Dispatcher) period() time.Duration {
	if d.cfg.HeartbeatPeriod != nil {
		if p := d.cfg.HeartbeatPeriod(); p > 0 {
			return p
		}
	}
	return DefaultHeartbeatPeriod
}

// grace is how long a node heartbeating at period may go without a
// heartbeat or a session.
func (d *Dispatcher) grace(period time.Duration) time.Duration {
	return period * time.Duration(d.cfg.HeartbeatGrace)
}

// Run serves sessions until ctx ends (the leader's term): it puts down
// nodes whose heartbeats lapse and writes task and node statuses in
// batches. When it returns every session ends with codes.Unavailable, so
// agents reconnect to the next leader. Nodes READY when it starts get one
// grace period to open a session.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.cfg.Store == nil {
		return errors.New("dispatcher: Config.Store is nil; pass the manager's store")
	}
	if d.cfg.OpenSecret == nil {
		return errors.New("dispatcher: Config.OpenSecret is nil; pass the function that opens sealed secret data (ca.Open with the cluster key)")
	}
	t := &term{done: make(chan struct{}), quit: make(chan struct{}), writes: make(chan *write, 1024), nodes: map[string]*nodeRec{}}
	if err := d.startTerm(t); err != nil {
		return err
	}
	defer d.endTerm(t)
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return d.writer(gctx, t) })
	g.Go(func() error { return d.expire(gctx, t) })
	return g.Wait()
}

func (d *Dispatcher) startTerm(t *term) error {
	deadline := d.cfg.Now().Add(d.grace(d.period()))
	var ready []string
	d.cfg.Store.View(func(tx store.ReadTx) {
		ns, _ := tx.FindNodes(store.All)
		for _, n := range ns {
			// Managers without an agent keep no session: Raft, not
			// heartbeats, tells whether they are reachable.
			if n.GetStatus().GetState() == pb.NodeStatus_STATE_READY && n.GetRole() != pb.NodeSpec_ROLE_MANAGER {
				ready = append(ready, n.GetId())
			}
		}
	})
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term != nil {
		return errors.New("dispatcher: Run is already running")
	}
	for _, id := range ready {
		t.nodes[id] = &nodeRec{deadline: deadline, reason: ReasonHeartbeat}
	}
	d.term = t
	d.log.Info("dispatcher serving sessions", "ready_nodes", len(ready))
	return nil
}

func (d *Dispatcher) endTerm(t *term) {
	d.mu.Lock()
	defer d.mu.Unlock()
	gone := status.Error(codes.Unavailable, "this manager stopped leading; reconnect to the new leader")
	for _, n := range t.nodes {
		if n.end != nil {
			n.end(gone)
		}
	}
	d.term = nil
	close(t.done)
}

// current returns the running term, or the error that refuses a call:
// a redirect to the leader from a follower.
func (d *Dispatcher) current() (*term, error) {
	if d.cfg.IsLeader != nil && !d.cfg.IsLeader() {
		return nil, d.notLeader()
	}
	d.mu.Lock()
	t := d.term
	d.mu.Unlock()
	if t == nil {
		return nil, status.Error(codes.Unavailable, "the dispatcher is not running on this manager yet; retry")
	}
	return t, nil
}

// notLeader is codes.Unavailable with the leader as a *pb.WeightedPeer
// detail when it is known: the agent tries it next.
func (d *Dispatcher) notLeader() error {
	var id, addr string
	if d.cfg.LeaderAddr != nil {
		id, addr = d.cfg.LeaderAddr()
	}
	if addr == "" {
		return status.Error(codes.Unavailable, "this manager is not the leader and no leader is known; retry")
	}
	st := status.New(codes.Unavailable, fmt.Sprintf("this manager is not the leader; the leader is %s at %s", id, addr))
	if withLeader, err := st.WithDetails(&pb.WeightedPeer{Addr: addr, NodeId: id, Weight: 1}); err == nil {
		st = withLeader
	}
	return st.Err()
}

// caller identifies the calling node and returns the running term.
func (d *Dispatcher) caller(ctx context.Context) (ca.Identity, *term, error) {
	id, err := d.cfg.Identify(ctx)
	if err != nil {
		if _, ok := status.FromError(err); ok {
			return id, nil, err
		}
		return id, nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if id.NodeID == "" {
		return id, nil, status.Error(codes.Unauthenticated, "the caller's certificate names no node")
	}
	// A removed node's certificate outlives it: the store remembers.
	d.cfg.Store.View(func(tx store.ReadTx) { err = admit.Removal(tx, id) })
	if err != nil {
		return id, nil, err
	}
	t, err := d.current()
	return id, t, err
}

// errUnknownSession tells an agent to open a new session.
var errUnknownSession = status.Error(codes.FailedPrecondition, "unknown session; start a new one")

// checkSession returns nil when sid is the node's live session.
func (d *Dispatcher) checkSession(t *term, nodeID, sid string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := t.nodes[nodeID]
	if sid == "" || n == nil || n.sid != sid {
		return errUnknownSession
	}
	return nil
}
