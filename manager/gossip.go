package manager

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"berth/discovery"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// gossip runs this manager's memberlist member once the cluster's gossip
// key is in the store: it joins the other managers (at their Raft
// address's port + 1 unless they chose another port, in which case they
// join us) and hands the verdicts it reaches on agents' nodes to the owner
// of node liveness (the dispatcher), which puts a dead node down at once
// instead of waiting for its heartbeat deadline. It touches nothing else
// of the manager: what it needs is in gossipConfig.
type gossip struct {
	cfg gossipConfig

	mu sync.Mutex
	g  *discovery.Gossip
}

// gossipConfig is what the gossip member reads of its manager.
type gossipConfig struct {
	nodeID    string
	advertise string // the manager's API address, told to members
	// addr is where to gossip, "" when gossip is off or shared.
	addr string
	// shared, when set, is the gossip member of the agent this manager
	// runs in (nil until it has one): one node ID gossips once.
	shared func() *discovery.Gossip
	// st and clusterID are where the gossip keys are kept.
	st        *store.MemoryStore
	clusterID string
	// members are the Raft members, the managers to join.
	members func() ([]*pb.RaftMember, error)
	log     *slog.Logger
}

// verdicts takes gossip's verdicts on nodes: the dispatcher, the one
// owner of node liveness, which weighs them against heartbeats and takes
// them only while it leads.
type verdicts interface {
	ReportDead(nodeID, detector string) (down bool, err error)
}

// newGossip assembles this manager's gossip member; run starts it.
func (m *Manager) newGossip() *gossip {
	cfg := gossipConfig{
		nodeID: m.nodeID, advertise: m.advertise, addr: m.gossipAddr(),
		st: m.be.Store(), clusterID: m.clusterID, members: m.be.Members,
		log: m.log,
	}
	if m.cfg.SharedNode {
		cfg.shared = m.cfg.SharedGossip // nil: no gossip at all
	}
	return &gossip{cfg: cfg}
}

// gossipAddr is where this manager gossips, or "" when gossip is off.
func (m *Manager) gossipAddr() string {
	if m.cfg.GossipPort < 0 || m.cfg.SharedNode {
		return ""
	}
	host, port, err := net.SplitHostPort(m.advertise)
	if err != nil {
		return ""
	}
	p := m.cfg.GossipPort
	if p == 0 {
		n, _ := strconv.Atoi(port)
		p = n + 1
	}
	return net.JoinHostPort(host, strconv.Itoa(p))
}

// peerGossipAddr derives another manager's gossip address from its Raft
// address by the default convention.
func peerGossipAddr(raftAddr string) string {
	host, port, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return ""
	}
	n, _ := strconv.Atoi(port)
	return net.JoinHostPort(host, strconv.Itoa(n+1))
}

// run runs the member until ctx ends, handing verdicts to v.
func (s *gossip) run(ctx context.Context, v verdicts) error {
	if s.cfg.shared != nil {
		return s.runShared(ctx, v)
	}
	addr := s.cfg.addr
	if addr == "" {
		return nil
	}
	key, accept, err := s.waitKeys(ctx)
	if err != nil || key == nil {
		return nil
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	g, err := discovery.NewGossip(discovery.GossipConfig{
		NodeID: s.cfg.nodeID, BindAddr: host, BindPort: p, Key: key, AcceptKeys: accept,
		Role: "manager", APIAddr: s.cfg.advertise, Logger: s.cfg.log.With("part", "gossip"),
	})
	if err == nil {
		err = g.Start(ctx)
	}
	if err != nil {
		s.cfg.log.Warn("gossip not started; node failure detection falls back to heartbeats", "addr", addr, "err", err)
		return nil
	}
	s.mu.Lock()
	s.g = g
	s.mu.Unlock()
	defer g.Shutdown()
	s.cfg.log.Info("gossip started", "addr", addr)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return s.followKeys(ctx, g) })
	eg.Go(func() error { return s.watch(ctx, g, v) })
	return eg.Wait()
}

// watch joins the other managers now and then and handles the member's
// events.
func (s *gossip) watch(ctx context.Context, g *discovery.Gossip, v verdicts) error {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	s.joinManagers(ctx, g)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.joinManagers(ctx, g)
		case ev := <-g.Events():
			s.handle(ev, v)
		}
	}
}

// runShared watches the gossip member of the agent this manager runs in
// (a promoted node): one node ID gossips once.
func (s *gossip) runShared(ctx context.Context, v verdicts) error {
	var g *discovery.Gossip
	for g == nil {
		if g = s.cfg.shared(); g != nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(200 * time.Millisecond):
		}
	}
	s.mu.Lock()
	s.g = g
	s.mu.Unlock()
	s.cfg.log.Info("watching the agent's gossip member", "addr", g.Addr())
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-g.Events():
			if !ok {
				return nil // the agent's member shut down
			}
			s.handle(ev, v)
		}
	}
}

// waitKeys polls the store until the Cluster object carries the gossip
// key, and returns it with the keys accepted meanwhile.
func (s *gossip) waitKeys(ctx context.Context) ([]byte, [][]byte, error) {
	for {
		var c *pb.Cluster
		s.cfg.st.View(func(tx store.ReadTx) { c = tx.GetCluster(s.cfg.clusterID) })
		if key, accept := gossipKeys(c); len(key) > 0 {
			return key, accept, nil
		}
		select {
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// followKeys gives the member the keys the store holds as they rotate.
func (s *gossip) followKeys(ctx context.Context, g *discovery.Gossip) error {
	st := s.cfg.st
	return store.Follow(ctx, s.cfg.log, func(ctx context.Context) error {
		for {
			var c *pb.Cluster
			w, err := st.ViewAndWatch(ctx, func(tx store.ReadTx) { c = tx.GetCluster(s.cfg.clusterID) }, store.Only[*pb.Cluster]())
			if err != nil {
				return err
			}
			if key, accept := gossipKeys(c); len(key) > 0 {
				if err := g.SetKeys(key, accept); err != nil {
					s.cfg.log.Error("set the gossip keys", "err", err)
				}
			}
			select {
			case <-ctx.Done():
			case <-w.Events():
			}
			err = w.Err()
			w.Close()
			if err != nil || ctx.Err() != nil {
				return err
			}
		}
	})
}

// joinManagers joins the Raft members gossip does not know yet.
func (s *gossip) joinManagers(ctx context.Context, g *discovery.Gossip) {
	members, err := s.cfg.members()
	if err != nil {
		return
	}
	var peers []string
	for _, rm := range members {
		if rm.NodeId == s.cfg.nodeID || g.IsAlive(rm.NodeId) {
			continue
		}
		if a := peerGossipAddr(rm.Addr); a != "" {
			peers = append(peers, a)
		}
	}
	if len(peers) > 0 {
		if _, err := g.Join(ctx, peers); err != nil {
			s.cfg.log.Debug("gossip join of managers", "peers", peers, "err", err)
		}
	}
}

// handle passes a death gossip confirmed to v. Managers are watched by
// Raft: gossip's verdicts concern only agents' nodes.
func (s *gossip) handle(ev discovery.Event, v verdicts) {
	s.cfg.log.Debug("gossip event", "node", ev.NodeID, "kind", ev.Kind.String(), "addr", ev.Addr)
	if ev.Kind != discovery.EventDead || ev.Role == "manager" {
		return
	}
	down, err := v.ReportDead(ev.NodeID, "gossip")
	if err != nil {
		s.cfg.log.Debug("gossip: mark node down", "node", ev.NodeID, "err", err)
	} else if down {
		s.cfg.log.Info("node down: gossip confirmed it dead", "node", ev.NodeID)
	}
}

// peers lists the gossip addresses of the live members, this one first:
// what a joining agent joins.
func (s *gossip) peers() []string {
	s.mu.Lock()
	g := s.g
	s.mu.Unlock()
	if g == nil {
		return nil
	}
	out := []string{g.Addr()}
	for _, mb := range g.Members() {
		if mb.State == discovery.MemberAlive && mb.NodeID != s.cfg.nodeID {
			out = append(out, mb.Addr)
		}
	}
	return out
}

// keyRotator rotates the gossip key while this manager leads.
func (m *Manager) keyRotator() *keyRotator {
	every := m.cfg.GossipKeyRotation
	if every <= 0 {
		every = DefaultGossipKeyRotation
	}
	return &keyRotator{
		st: m.be.Store(), clusterID: m.clusterID, every: every,
		now: m.cfg.Now, log: m.log.With("loop", "gossip-keys"),
	}
}
