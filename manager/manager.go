package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"

	"berth/ca"
	"berth/deploy"
	"berth/discovery"
	"berth/manager/assign"
	"berth/manager/controlapi"
	"berth/manager/dispatcher"
	"berth/manager/mux"
	"berth/manager/nodeca"
	"berth/manager/raftapi"
	"berth/overlay/allocator"
	pb "berth/proto/berth/v1"
	"berth/store/raftstore"
)

// Config configures a manager.
type Config struct {
	DataDir       string
	ListenAddr    string
	AdvertiseAddr string
	// Join and Token make this manager join an existing cluster (first run only).
	Join  []string
	Token string
	// ForceNewCluster recovers a one-manager cluster from this data dir.
	ForceNewCluster bool
	// InsecureRegistries are handed to every agent.
	InsecureRegistries []string
	// AddressPool and AddressPoolMaskLen set the cluster address pool
	// network subnets are carved from, when this manager creates the
	// cluster (first run only); 10.0.0.0/8 in /24s when empty.
	AddressPool        string
	AddressPoolMaskLen int
	// GossipPort is where this manager gossips (TCP and UDP, on the
	// advertise address): 0 means the API port + 1, -1 turns gossip off.
	GossipPort int
	// HeartbeatPeriod seeds the cluster spec's heartbeat_period when this
	// manager creates the cluster (first run only);
	// dispatcher.DefaultHeartbeatPeriod when zero. The spec is the one
	// source afterwards (`berth cluster update --heartbeat-period`).
	HeartbeatPeriod time.Duration
	// GossipKeyRotation is how often the gossip key rotates (it also
	// rotates after every node removal); DefaultGossipKeyRotation when zero.
	GossipKeyRotation time.Duration
	// CertLifetime of node certificates this manager issues at bootstrap
	// (the cluster spec's cert_expiry governs later ones); 90 days when zero.
	CertLifetime time.Duration
	// SharedNode says this manager runs inside the agent of its node (a
	// promoted berth-agent): the agent describes the node and gossips for
	// it, so the manager leaves the Node's description alone and runs no
	// gossip member (a node ID may gossip only once).
	SharedNode bool
	// SharedGossip, with SharedNode, is the agent's gossip member (nil
	// until the agent has one): the manager watches its events, so that
	// while it leads, nodes gossip confirms dead go down at once.
	SharedGossip func() *discovery.Gossip
	// InstallClientBundle writes the CLI bundle into this directory too
	// (normally ~/.berth) when it holds none; empty skips it.
	InstallClientBundle string
	// Raft tunes the Raft node (timeouts, snapshots); identity fields are
	// filled in by the manager.
	Raft raftstore.Config
	// LeaderLoops run under one errgroup while this manager leads.
	LeaderLoops []func(ctx context.Context, m *Manager) error
	Now         func() time.Time
	Logger      *slog.Logger
}

// Manager is one running manager.
type Manager struct {
	cfg        Config
	log        *slog.Logger
	id         *identity
	clusterID  string
	nodeID     string
	advertise  string
	node       *raftstore.Node
	peers      *raftapi.Peers
	ca         *nodeca.Server
	ready      chan struct{}
	listener   net.Listener
	gossip     *gossip
	dispatcher *dispatcher.Dispatcher
}

// New checks cfg; Run does the work.
func New(cfg Config) (*Manager, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("manager: DataDir is empty")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.CertLifetime == 0 {
		cfg.CertLifetime = nodeca.DefaultCertLifetime
	}
	adv, err := advertiseAddr(cfg.ListenAddr, cfg.AdvertiseAddr)
	if err != nil {
		return nil, err
	}
	if err := checkAddressPool(cfg.AddressPool, cfg.AddressPoolMaskLen); err != nil {
		return nil, err
	}
	m := &Manager{cfg: cfg, log: cfg.Logger, advertise: adv, ready: make(chan struct{})}
	return m, nil
}

// Ready is closed once the manager serves its API.
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// NodeID is this manager's node ID (valid after Ready).
func (m *Manager) NodeID() string { return m.nodeID }

// Addr is the address the manager listens on (valid after Ready).
func (m *Manager) Addr() string { return m.listener.Addr().String() }

// AdvertiseAddr is the address other nodes reach this manager on.
func (m *Manager) AdvertiseAddr() string { return m.advertise }

// Raft is this manager's Raft node (valid after Ready).
func (m *Manager) Raft() *raftstore.Node { return m.node }

// Run starts the manager and blocks until ctx ends or a part fails.
func (m *Manager) Run(ctx context.Context) error {
	id, err := m.loadOrCreateIdentity(ctx)
	if err != nil {
		return err
	}
	m.id = id
	ident := id.creds.Identity()
	m.clusterID, m.nodeID = ident.ClusterID, ident.NodeID

	ln, err := net.Listen("tcp", m.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", m.cfg.ListenAddr, err)
	}
	m.listener = ln
	mx := mux.New(ln, id.creds, m.log, mux.AdmitRaft(m.admitRaft))
	m.peers = raftapi.NewPeers(id.creds)
	defer m.peers.Close()

	rc := m.cfg.Raft
	rc.DataDir, rc.NodeID, rc.Addr = m.path(raftDir), m.nodeID, m.advertise
	rc.StreamLayer = mx.RaftLayer()
	rc.Bootstrap = id.bootstrapped
	rc.ForceNewCluster = m.cfg.ForceNewCluster
	rc.Forward = m.peers.Forward
	rc.Logger, rc.Clock = m.log, m.cfg.Now
	node, err := raftstore.Open(ctx, rc)
	if err != nil {
		ln.Close()
		return fmt.Errorf("open raft in %s: %w", rc.DataDir, err)
	}
	m.node = node
	defer node.Shutdown()
	mustJoin, err := m.mustJoinRaft()
	if err != nil {
		ln.Close()
		return err
	}

	m.gossip = m.newGossip()
	srv := m.grpcServer()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return mx.Serve(gctx) })
	g.Go(func() error {
		// Once gctx ends, the mux closing the listener or Stop running
		// before Serve is shutdown, not a failure.
		if err := srv.Serve(mx.GRPCListener()); err != nil && gctx.Err() == nil {
			return fmt.Errorf("serve gRPC: %w", err)
		}
		return nil
	})
	g.Go(func() error { <-gctx.Done(); srv.Stop(); return nil })
	g.Go(func() error { return node.RunWhileLeader(gctx, m.leaderLoops) })
	g.Go(func() error { return m.registerSelf(gctx) })
	g.Go(func() error { return m.renewer().Run(gctx) })
	g.Go(func() error { return m.gossip.run(gctx, m.dispatcher) })
	if mustJoin {
		g.Go(func() error { return m.joinRaft(gctx) })
	}
	close(m.ready)
	m.log.Info("manager serving", "addr", ln.Addr().String(), "advertise", m.advertise, "cluster", m.clusterID)
	return g.Wait()
}

func (m *Manager) grpcServer() *grpc.Server {
	srv := grpc.NewServer(append(guardOptions(m.log), grpc.Creds(mux.Handshaken()),
		grpc.ChainUnaryInterceptor(m.unaryAuth), grpc.ChainStreamInterceptor(m.streamAuth))...)
	m.ca = nodeca.New(nodeca.Config{Store: m.node.Store(), ClusterID: m.clusterID, ClusterKey: m.id.clusterKey, Now: m.cfg.Now, Log: m.log})
	pb.RegisterNodeCAServer(srv, m.ca)
	pb.RegisterRaftMembershipServer(srv, raftapi.New(m.node, m.peers, m.log))
	m.dispatcher = dispatcher.New(dispatcher.Config{
		Store: m.node.Store(), Now: m.cfg.Now, Log: m.log.With("part", "dispatcher"),
		HeartbeatPeriod:    m.heartbeatPeriod,
		Managers:           m.managerPeers,
		IsLeader:           m.node.IsLeader,
		LeaderAddr:         m.node.Leader,
		InsecureRegistries: m.insecureRegistries,
		GossipKeys:         m.gossipKeys,
		GossipPeers:        m.gossip.peers,
		OpenSecret:         func(b []byte) ([]byte, error) { return ca.Open(m.id.clusterKey, b) },
	})
	pb.RegisterControlServer(srv, controlapi.New(controlapi.Config{
		Store: m.node.Store(), Reads: m.consistentRead, Membership: membership{Node: m.node, peers: m.peers}, ClusterID: m.clusterID,
		NewToken: m.newToken, SealSecret: func(b []byte) ([]byte, error) { return ca.Seal(m.id.clusterKey, b) },
		Agents: m.dispatcher, Leader: m.leaderControl,
		Now: m.cfg.Now, Log: m.log,
	}))
	pb.RegisterDispatcherServer(srv, m.dispatcher)
	return srv
}

// leaderControl is the leader's Control API when another manager leads,
// nil when this one does.
func (m *Manager) leaderControl(context.Context) (pb.ControlClient, error) {
	if m.node.IsLeader() {
		return nil, nil
	}
	_, addr := m.node.Leader()
	return m.peers.Control(addr)
}

// managerPeers lists the managers agents may fail over to.
func (m *Manager) managerPeers() []*pb.WeightedPeer {
	members, err := m.node.Members()
	if err != nil {
		return nil
	}
	out := make([]*pb.WeightedPeer, 0, len(members))
	for _, rm := range members {
		out = append(out, &pb.WeightedPeer{Addr: rm.Addr, NodeId: rm.NodeId, Weight: 1})
	}
	return out
}

// consistentRead makes a Control API read linearizable: the leader
// confirms its leadership; a follower waits for the leader's read index.
func (m *Manager) consistentRead(ctx context.Context) error {
	if m.node.IsLeader() {
		if _, err := m.node.ReadIndex(ctx); err == nil {
			return nil
		}
	}
	_, addr := m.node.Leader()
	if addr == "" {
		_, err := m.node.ReadIndex(ctx) // explains: no leader, quorum counts
		return err
	}
	index, err := m.peers.ReadIndex(ctx, addr)
	if err != nil {
		return err
	}
	return m.node.Store().WaitIndex(ctx, index)
}

func (m *Manager) newToken() (string, error) {
	tok, err := ca.NewToken(ca.CertHash(m.rootPEM()))
	return tok.String(), err
}

func (m *Manager) rootPEM() []byte {
	root, _, _, err := ca.Dir(m.path(certsDir)).Read()
	if err != nil {
		return nil
	}
	return root
}

// leaderLoops runs while this manager leads: cluster bookkeeping and the
// configured loops, under one errgroup.
func (m *Manager) leaderLoops(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.ensureCluster(gctx) })
	g.Go(func() error { return m.keyRotator().run(gctx) })
	g.Go(func() error { return m.dispatcher.Run(gctx) })
	assigner, err := assign.New(assign.Config{Store: m.node.Store(), Now: m.cfg.Now, Log: m.log.With("loop", "assign")})
	if err != nil {
		return err
	}
	g.Go(func() error { return assigner.Run(gctx) })
	alloc, err := allocator.New(allocator.Config{Store: m.node.Store(), ClusterID: m.clusterID, Now: m.cfg.Now, Log: m.log.With("loop", "allocator")})
	if err != nil {
		return err
	}
	g.Go(func() error { return alloc.Run(gctx) })
	orch, err := deploy.New(deploy.Config{Store: m.node.Store(), Now: m.cfg.Now, Log: m.log.With("loop", "orchestrator")})
	if err != nil {
		return err
	}
	g.Go(func() error { return orch.Run(gctx) })
	upd, err := deploy.NewUpdater(deploy.Config{Store: m.node.Store(), Now: m.cfg.Now, Log: m.log.With("loop", "updater")})
	if err != nil {
		return err
	}
	g.Go(func() error { return upd.Run(gctx) })
	for _, loop := range m.cfg.LeaderLoops {
		g.Go(func() error { return loop(gctx, m) })
	}
	// The term lasts until leadership ends, whatever one-shot work finished.
	g.Go(func() error { <-gctx.Done(); return nil })
	return g.Wait()
}

// joinRaft asks the cluster to add this manager as a voter, retrying until
// it is a member.
func (m *Manager) joinRaft(ctx context.Context) error {
	req := &pb.JoinRequest{NodeId: m.nodeID, Addr: m.advertise}
	for attempt := 0; ; attempt++ {
		for _, addr := range m.cfg.Join {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := m.peers.Join(cctx, addr, req)
			cancel()
			if err == nil {
				m.log.Info("joined raft", "via", addr)
				return m.markRaftJoined()
			}
			m.log.Warn("raft join failed; retrying", "via", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 2*time.Second)):
		}
	}
}

func (m *Manager) renewer() *ca.Renewer {
	return &ca.Renewer{
		Creds: m.id.creds, Dir: ca.Dir(m.path(certsDir)), Log: m.log, Now: m.cfg.Now,
		Issue: func(ctx context.Context, csrPEM []byte) ([]byte, []byte, error) {
			root, err := m.ca.Root()
			if err != nil {
				return nil, nil, err
			}
			cert, err := root.Issue(ca.IssueRequest{CSRPEM: csrPEM, NodeID: m.nodeID, Role: ca.RoleManager, Lifetime: m.certLifetime()}, m.cfg.Now())
			return cert, root.CertPEM, err
		},
	}
}
