package manager

import (
	"context"
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
// join us) and, while this manager leads, puts a node gossip confirms dead
// down at once through onNodeDead, instead of waiting for its heartbeat
// deadline.
type gossip struct {
	m *Manager

	mu sync.Mutex
	g  *discovery.Gossip
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

func (s *gossip) run(ctx context.Context) error {
	if s.m.cfg.SharedNode {
		return s.runShared(ctx)
	}
	addr := s.m.gossipAddr()
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
		NodeID: s.m.nodeID, BindAddr: host, BindPort: p, Key: key, AcceptKeys: accept,
		Role: "manager", APIAddr: s.m.advertise, Logger: s.m.log.With("part", "gossip"),
	})
	if err == nil {
		err = g.Start(ctx)
	}
	if err != nil {
		s.m.log.Warn("gossip not started; node failure detection falls back to heartbeats", "addr", addr, "err", err)
		return nil
	}
	s.mu.Lock()
	s.g = g
	s.mu.Unlock()
	defer g.Shutdown()
	s.m.log.Info("gossip started", "addr", addr)
	eg, ctx := errgroup.WithContext(ctx)
	eg.Go(func() error { return s.followKeys(ctx, g) })
	eg.Go(func() error { return s.watch(ctx, g) })
	return eg.Wait()
}

// watch joins the other managers now and then and handles the member's
// events.
func (s *gossip) watch(ctx context.Context, g *discovery.Gossip) error {
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
			s.handle(ev)
		}
	}
}

// runShared watches the gossip member of the agent this manager runs in
// (a promoted node): one node ID gossips once.
func (s *gossip) runShared(ctx context.Context) error {
	if s.m.cfg.SharedGossip == nil {
		return nil
	}
	var g *discovery.Gossip
	for g == nil {
		if g = s.m.cfg.SharedGossip(); g != nil {
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
	s.m.log.Info("watching the agent's gossip member", "addr", g.Addr())
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-g.Events():
			if !ok {
				return nil // the agent's member shut down
			}
			s.handle(ev)
		}
	}
}

// waitKeys polls the store until the Cluster object carries the gossip
// key, and returns it with the keys accepted meanwhile.
func (s *gossip) waitKeys(ctx context.Context) ([]byte, [][]byte, error) {
	for {
		key, accept := s.m.gossipKeys()
		if len(key) > 0 {
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
	st := s.m.node.Store()
	return store.Follow(ctx, s.m.log, func(ctx context.Context) error {
		for {
			var c *pb.Cluster
			w, err := st.ViewAndWatch(ctx, func(tx store.ReadTx) { c = tx.GetCluster(s.m.clusterID) }, store.Only[*pb.Cluster]())
			if err != nil {
				return err
			}
			if key, accept := gossipKeys(c); len(key) > 0 {
				if err := g.SetKeys(key, accept); err != nil {
					s.m.log.Error("set the gossip keys", "err", err)
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
	members, err := s.m.node.Members()
	if err != nil {
		return
	}
	var peers []string
	for _, rm := range members {
		if rm.NodeId == s.m.nodeID || g.IsAlive(rm.NodeId) {
			continue
		}
		if a := peerGossipAddr(rm.Addr); a != "" {
			peers = append(peers, a)
		}
	}
	if len(peers) > 0 {
		if _, err := g.Join(ctx, peers); err != nil {
			s.m.log.Debug("gossip join of managers", "peers", peers, "err", err)
		}
	}
}

func (s *gossip) handle(ev discovery.Event) {
	s.m.log.Debug("gossip event", "node", ev.NodeID, "kind", ev.Kind.String(), "addr", ev.Addr)
	// Managers are watched by Raft; gossip puts only agents' nodes down.
	if ev.Kind != discovery.EventDead || ev.Role == "manager" || !s.m.node.IsLeader() {
		return
	}
	// Gossip takes ~0.9 s to confirm a death, by when a dead agent has been
	// silent at least that long; one that heartbeated within half a period
	// is alive (gossip misjudged a starved prober or path), so this costs
	// no detection time and spares a false alarm its task moves.
	down, err := s.m.dispatcher.MarkDownIfSilent(ev.NodeID, "node confirmed dead by gossip", s.m.heartbeatPeriod()/2)
	if err != nil {
		s.m.log.Debug("gossip: mark node down", "node", ev.NodeID, "err", err)
	} else if down {
		s.m.log.Info("node down: gossip confirmed it dead", "node", ev.NodeID)
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
		if mb.State == discovery.MemberAlive && mb.NodeID != s.m.nodeID {
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
		st: m.node.Store(), clusterID: m.clusterID, every: every,
		now: m.cfg.Now, log: m.log.With("loop", "gossip-keys"),
	}
}
