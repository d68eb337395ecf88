package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"berth/ca"
	"berth/manager/mux"
	pb "berth/proto/berth/v1"
	"berth/store"
	"berth/store/etcdstore"
)

// backend keeps the cluster state and elects the leader: the embedded
// Raft (raft.go, the default) or etcd (etcd.go). Everything else in the
// manager reaches the state and the leadership through it, so Run picks
// one and the rest is the same on both.
type backend interface {
	// Store is this manager's view of the state; its writes go through
	// the backend (Raft entries, or etcd transactions).
	Store() *store.MemoryStore
	IsLeader() bool
	// Leader names the leading manager and its address ("" when none).
	Leader() (id, addr string)
	AppliedIndex() uint64
	// Members are the managers: Raft's configuration, or on etcd the
	// nodes of role manager in the store.
	Members() ([]*pb.RaftMember, error)
	// RemoveServer takes a demoted manager's place away, refusing when
	// that would lose quorum or the last manager.
	RemoveServer(ctx context.Context, id string) error
	// ConsistentRead returns once this manager's view holds every write
	// acknowledged before the call.
	ConsistentRead(ctx context.Context) error
	// LeaderControl is the leader's Control API, nil when this manager leads.
	LeaderControl(ctx context.Context) (pb.ControlClient, error)
	// CanPromote says whether a worker may be promoted (nil) or why not.
	CanPromote() error
	// Register adds the backend's own gRPC services (Raft membership).
	Register(srv *grpc.Server)
	// Run does the backend's background work (following etcd, joining
	// Raft) until ctx ends.
	Run(ctx context.Context) error
	// RunWhileLeader runs fn for each term this manager leads.
	RunWhileLeader(ctx context.Context, fn func(context.Context) error) error
	Close()
}

// EtcdConfig keeps the cluster state in etcd instead of Raft
// (berth-manager --store etcd).
type EtcdConfig struct {
	// Dial says how to reach etcd (--etcd-endpoints and certificates).
	Dial etcdstore.DialConfig
	// Prefix is the key prefix of this cluster's state (--etcd-prefix);
	// etcdstore.DefaultPrefix when empty.
	Prefix string
	// LeaseTTL is the leader's lease; etcdstore.DefaultLeaseTTL when zero.
	LeaseTTL time.Duration
}

// openBackend is Run's second step: the Raft node on the shared port's
// Raft side, or the etcd backend when Config.Etcd is set.
func (m *Manager) openBackend(ctx context.Context, mx *mux.Mux) (backend, error) {
	if err := m.checkStoreKind(); err != nil {
		return nil, err
	}
	if m.cfg.Etcd != nil {
		return m.openEtcd(ctx)
	}
	return m.openRaft(ctx, mx)
}

// storeKindFile records in a manager's data dir which backend its
// cluster keeps the state in.
const storeKindFile = "store"

// checkStoreKind refuses to start a manager on another backend than its
// cluster's: a Raft manager started with --store etcd (or the reverse)
// would serve an empty state, or none. A data dir from before the file
// existed is Raft's when it holds Raft's directory.
func (m *Manager) checkStoreKind() error {
	want := "raft"
	if m.cfg.Etcd != nil {
		want = "etcd"
	}
	b, err := os.ReadFile(m.path(storeKindFile))
	switch {
	case err == nil:
	case errors.Is(err, fs.ErrNotExist):
		if _, err := os.Stat(m.path(raftDir)); err == nil {
			b = []byte("raft")
			break
		}
		return ca.WriteFileAtomic(m.path(storeKindFile), []byte(want+"\n"), 0o600)
	default:
		return fmt.Errorf("read %s: %w", m.path(storeKindFile), err)
	}
	have := strings.TrimSpace(string(b))
	if have == want {
		return nil
	}
	if have == "etcd" {
		return fmt.Errorf("the data dir %s is of a manager whose cluster keeps its state in etcd: start it with --store etcd and the cluster's --etcd-* flags, or use a fresh --data-dir", m.cfg.DataDir)
	}
	return fmt.Errorf("the data dir %s is of a manager whose cluster keeps its state in the embedded Raft: start it without --store etcd, or use a fresh --data-dir to join an etcd cluster", m.cfg.DataDir)
}

// Store is this manager's view of the cluster state (valid after Ready).
func (m *Manager) Store() *store.MemoryStore { return m.be.Store() }

// IsLeader says whether this manager leads now (valid after Ready).
func (m *Manager) IsLeader() bool { return m.be.IsLeader() }

// Members are the cluster's managers as this one knows them (valid after
// Ready).
func (m *Manager) Members() ([]*pb.RaftMember, error) { return m.be.Members() }

// managerPeers lists the managers agents may fail over to.
func (m *Manager) managerPeers() []*pb.WeightedPeer {
	members, err := m.be.Members()
	if err != nil {
		return nil
	}
	out := make([]*pb.WeightedPeer, 0, len(members))
	for _, rm := range members {
		out = append(out, &pb.WeightedPeer{Addr: rm.Addr, NodeId: rm.NodeId, Weight: 1})
	}
	return out
}
