package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"

	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/manager/raftapi"
	pb "berth/proto/berth/v1"
	"berth/store"
	"berth/store/etcdstore"
)

// etcdBackend keeps the cluster state in etcd (store/etcdstore): every
// manager follows the prefix into its own store and writes with guarded
// etcd transactions; the leader is the winner of etcd's election. The
// managers are the nodes of role manager in the store: a join with a
// manager token registers one, a demotion or removal takes it out.
type etcdBackend struct {
	b     *etcdstore.Backend
	cli   *clientv3.Client
	peers *raftapi.Peers
	log   *slog.Logger
	// campaign is this manager's election value: its node ID and address.
	campaign string
	// self is this manager's address.
	self    string
	leading atomic.Bool
	mu      sync.Mutex
	// leaderID and leaderAddr are the elected leader's, as observed.
	leaderID, leaderAddr string
	// onLeaderChange, if set, counts elections (metrics; Config.Raft's).
	onLeaderChange func(leaderID string)
	// id is this manager's node ID; present the managers whose presence
	// key is in etcd (nil until first seen).
	id      string
	present map[string]bool
}

// openEtcd dials etcd, claims or checks the prefix and loads the state:
// a wrong endpoint, certificate or prefix ends Run here, with the flag to
// fix.
func (m *Manager) openEtcd(ctx context.Context) (*etcdBackend, error) {
	ec := m.cfg.Etcd
	cli, err := etcdstore.Dial(ctx, ec.Dial)
	if err != nil {
		return nil, err
	}
	e := &etcdBackend{cli: cli, peers: m.peers, log: m.log, campaign: m.nodeID + " " + m.advertise, self: m.advertise,
		onLeaderChange: m.cfg.Raft.OnLeaderChange, id: m.nodeID}
	e.b, err = etcdstore.Open(ctx, etcdstore.Config{
		Client: cli, Prefix: ec.Prefix, LeaseTTL: ec.LeaseTTL, Logger: m.log.With("part", "etcd"),
		Forward: e.forward, OnCommit: m.cfg.Raft.OnCommit,
	})
	if err != nil {
		cli.Close()
		return nil, err
	}
	if err := e.checkCluster(m.clusterID, ec.Prefix); err != nil {
		cli.Close()
		return nil, err
	}
	m.log.Info("cluster state in etcd", "etcd", strings.Join(ec.Dial.Endpoints, ","), "prefix", cmpPrefix(ec.Prefix))
	return e, nil
}

func cmpPrefix(p string) string {
	if p == "" {
		return etcdstore.DefaultPrefix
	}
	return p
}

// checkCluster refuses a prefix that holds another cluster's state: a
// manager with a fresh data dir makes a new cluster, and two clusters
// must not share one prefix.
func (e *etcdBackend) checkCluster(clusterID, prefix string) error {
	var other string
	e.b.Store().View(func(tx store.ReadTx) {
		cs, _ := tx.FindClusters(store.All)
		for _, c := range cs {
			if c.GetId() != clusterID {
				other = c.GetId()
			}
		}
	})
	if other == "" {
		return nil
	}
	return fmt.Errorf("etcd prefix %s holds cluster %s, and this manager's data dir is of cluster %s: "+
		"join that cluster (an empty --data-dir, --join MANAGER_ADDR and a manager token), or give this cluster its own --etcd-prefix", cmpPrefix(prefix), other, clusterID)
}

func (e *etcdBackend) Store() *store.MemoryStore { return e.b.Store() }
func (e *etcdBackend) IsLeader() bool            { return e.leading.Load() }
func (e *etcdBackend) AppliedIndex() uint64      { return e.b.Store().Index() }
func (e *etcdBackend) Close()                    { e.cli.Close() }

// Register serves RaftMembership on etcd: the leader commits the writes
// followers forward (Propose) and hands out read indexes; joins through
// Raft are refused, saying how managers join here.
func (e *etcdBackend) Register(srv *grpc.Server) {
	pb.RegisterRaftMembershipServer(srv, raftapi.New(e, e.peers, e.log))
}

// errNoRaft refuses Raft joins on etcd.
var errNoRaft = errors.New("this manager keeps the cluster state in etcd and runs no Raft: " +
	"managers join with `berth-manager --store etcd --join` and a manager token")

// AddVoter refuses: on etcd, a manager token's join registers the manager.
func (e *etcdBackend) AddVoter(context.Context, string, string) error { return errNoRaft }

// ApplyBatch writes a batch a follower forwarded, while this manager leads.
func (e *etcdBackend) ApplyBatch(ctx context.Context, b *pb.StoreBatch) (uint64, error) {
	if !e.IsLeader() {
		return 0, store.ErrNotLeader
	}
	return e.b.ProposeHere(ctx, b)
}

// ReadIndex is etcd's last write under the prefix (raftapi's Barrier).
func (e *etcdBackend) ReadIndex(ctx context.Context) (uint64, error) { return e.b.ReadIndex(ctx) }

// forward passes a write to the leader: one manager writes to etcd, so
// writers on several managers do not race each other for the guard
// (etcdstore.Config.Forward).
func (e *etcdBackend) forward(ctx context.Context, b *pb.StoreBatch) (uint64, bool, error) {
	if e.IsLeader() {
		return 0, false, nil
	}
	_, addr := e.Leader()
	if addr == "" || addr == e.self {
		return 0, false, nil
	}
	index, err := e.peers.Forward(ctx, addr, b)
	if err != nil && neverSent(err) {
		// The leader is unreachable (killed, say) and its lease has not
		// run out yet: the write, which surely did not reach it, is made
		// here, guarded as every write is.
		e.log.Debug("the leader is unreachable; writing to etcd from here", "leader", addr, "err", err)
		return 0, false, nil
	}
	return index, true, err
}

// neverSent says whether a forward failed before its request left this
// manager: gRPC could not connect to the leader at all.
func neverSent(err error) bool {
	return strings.Contains(err.Error(), "Error while dialing")
}

// CanPromote refuses: a promoted agent's manager would need etcd's
// endpoints and certificates, which agents are not given.
func (e *etcdBackend) CanPromote() error {
	return errors.New("this cluster keeps its state in etcd, and agents are not given etcd's endpoints and certificates: " +
		"start `berth-manager --store etcd --etcd-endpoints … --join MANAGER_ADDR --token MANAGER_TOKEN` on that host instead")
}

// Leader names the elected leader, as last observed.
func (e *etcdBackend) Leader() (id, addr string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leaderID, e.leaderAddr
}

// Run follows etcd into the store, keeps this manager's presence there,
// and watches who leads and which managers are present.
func (e *etcdBackend) Run(ctx context.Context) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return e.b.Run(gctx) })
	g.Go(func() error { return e.b.KeepPresent(gctx, e.id) })
	g.Go(func() error {
		return e.b.ObservePresent(gctx, func(ids map[string]bool) {
			e.mu.Lock()
			e.present = ids
			e.mu.Unlock()
		})
	})
	g.Go(func() error {
		return e.b.ObserveLeader(gctx, func(v string) {
			id, addr, _ := strings.Cut(v, " ")
			e.mu.Lock()
			e.leaderID, e.leaderAddr = id, addr
			e.mu.Unlock()
			e.log.Info("etcd election: leader", "node", id, "addr", addr)
			if e.onLeaderChange != nil {
				e.onLeaderChange(id)
			}
		})
	})
	return g.Wait()
}

// RunWhileLeader stands in etcd's election and runs fn while this
// manager leads.
func (e *etcdBackend) RunWhileLeader(ctx context.Context, fn func(context.Context) error) error {
	return e.b.RunWhileLeader(ctx, e.campaign, func(lctx context.Context) error {
		e.leading.Store(true)
		defer e.leading.Store(false)
		return fn(lctx)
	})
}

// Members are the nodes of role manager, the elected one marked leader,
// reachable while their presence key is in etcd (kept on a lease).
func (e *etcdBackend) Members() ([]*pb.RaftMember, error) {
	e.mu.Lock()
	leader, present := e.leaderID, e.present
	e.mu.Unlock()
	var nodes []*pb.Node
	var err error
	e.b.Store().View(func(tx store.ReadTx) { nodes, err = tx.FindNodes(store.ByRole(pb.NodeSpec_ROLE_MANAGER)) })
	if err != nil {
		return nil, err
	}
	out := make([]*pb.RaftMember, 0, len(nodes))
	for _, n := range nodes {
		reach := pb.ManagerStatus_REACHABILITY_UNKNOWN
		switch {
		case present == nil:
		case present[n.GetId()]:
			reach = pb.ManagerStatus_REACHABILITY_REACHABLE
		default:
			reach = pb.ManagerStatus_REACHABILITY_UNREACHABLE
		}
		out = append(out, &pb.RaftMember{
			NodeId: n.GetId(), Addr: n.GetDescription().GetAddr(), Voter: true,
			Leader: n.GetId() == leader, Reachability: reach,
		})
	}
	return out, nil
}

// RemoveServer completes a demotion: the Control API has already made the
// node a worker, so it is no longer a member; refused when no manager
// would be left.
func (e *etcdBackend) RemoveServer(_ context.Context, id string) error {
	members, err := e.Members()
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.GetNodeId() != id {
			return nil
		}
	}
	return errors.New("it is the last manager: promote or join another manager first")
}

// ConsistentRead waits until this manager has applied etcd's last write.
func (e *etcdBackend) ConsistentRead(ctx context.Context) error {
	index, err := e.b.ReadIndex(ctx)
	if err != nil {
		return status.Error(codes.Unavailable, err.Error())
	}
	return e.b.Store().WaitIndex(ctx, index)
}

// LeaderControl is the elected leader's Control API, nil when this
// manager leads.
func (e *etcdBackend) LeaderControl(context.Context) (pb.ControlClient, error) {
	if e.IsLeader() {
		return nil, nil
	}
	_, addr := e.Leader()
	if addr == "" {
		return nil, status.Error(codes.Unavailable, "no manager leads yet (the etcd election is under way); retry")
	}
	return e.peers.Control(addr)
}
