package manager

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"

	"berth/discovery"
	"berth/manager/dispatcher"
	"berth/manager/nodeca"
	"berth/manager/raftapi"
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
	// Etcd, when set, keeps the cluster state in etcd and elects the
	// leader there; no Raft runs (berth-manager --store etcd).
	Etcd *EtcdConfig
	// OnHeartbeat, if set, is called for each agent heartbeat the
	// dispatcher takes (metrics count them); it must not block.
	OnHeartbeat func()
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
	be         backend
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
	if cfg.Etcd != nil && cfg.ForceNewCluster {
		return nil, errors.New("--force-new-cluster recovers a Raft cluster; with --store etcd the state is etcd's: there is no Raft to recover")
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

// Raft is this manager's Raft node (valid after Ready), nil when the
// state is in etcd.
func (m *Manager) Raft() *raftstore.Node {
	if r, ok := m.be.(*raftBackend); ok {
		return r.Node
	}
	return nil
}

// Run runs the manager until ctx ends or a part fails. It takes its
// steps in order, each in its own file:
//
//  1. identity (identity.go): load this manager's certificate and the
//     cluster key, or make a new cluster (bootstrap.go), or join one with
//     a token;
//  2. the backend (backend.go): listen on the one port Raft and gRPC
//     share, open the replicated store — Raft (raft.go) and, for a joining
//     manager, know to ask to be added, or etcd (etcd.go);
//  3. CA (ca.go): the authority that signs node certificates; its key is
//     sealed in the Cluster object, so it comes with the store;
//  4. servers (servers.go): NodeCA, Raft membership, Control and
//     Dispatcher on that port, behind the role checks of auth.go;
//  5. loops (servers.go): serving, this manager's Node (membership.go),
//     certificate renewal, gossip, the backend's own work (the Raft join,
//     following etcd), and while this manager leads, the leader loops
//     (leader.go).
func (m *Manager) Run(ctx context.Context) error {
	if err := m.loadIdentity(ctx); err != nil {
		return err
	}
	mx, err := m.listen()
	if err != nil {
		return err
	}
	m.peers = raftapi.NewPeers(m.id.creds)
	defer m.peers.Close()
	be, err := m.openBackend(ctx, mx)
	if err != nil {
		m.listener.Close()
		return err
	}
	m.be = be
	defer be.Close()
	m.ca = m.newCA()
	srv := m.grpcServer()
	return m.serve(ctx, mx, srv)
}
