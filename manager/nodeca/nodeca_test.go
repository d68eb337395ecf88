package nodeca

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// fixture is a NodeCA over a local store holding one cluster.
type fixture struct {
	srv             *Server
	st              *store.MemoryStore
	worker, manager string
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	now := time.Now()
	root, err := ca.NewRoot("c1", now)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ca.NewClusterKey()
	if err != nil {
		t.Fatal(err)
	}
	caKey, err := root.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := ca.Seal(key, caKey)
	if err != nil {
		t.Fatal(err)
	}
	worker, _ := ca.NewToken(root.Hash())
	manager, _ := ca.NewToken(root.Hash())
	st := store.New(nil)
	err = st.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateCluster(&pb.Cluster{
			Id:         "c1",
			JoinTokens: &pb.JoinTokens{Worker: worker.String(), Manager: manager.String()},
			RootCa:     &pb.RootCA{CaCert: root.CertPEM, CaKey: sealed, CaCertHash: root.Hash()},
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Store: st, ClusterID: "c1", ClusterKey: key, Log: slog.New(slog.DiscardHandler)})
	return &fixture{srv: srv, st: st, worker: worker.String(), manager: manager.String()}
}

func (f *fixture) nodes(t *testing.T) []*pb.Node {
	t.Helper()
	var nodes []*pb.Node
	var err error
	f.st.View(func(tx store.ReadTx) { nodes, err = tx.FindNodes(store.All) })
	if err != nil {
		t.Fatal(err)
	}
	return nodes
}

func role(r pb.NodeSpec_Role) *pb.NodeSpec_Role { return &r }

// TestJoinRoles: a join is refused, with a message naming the right token,
// when the token grants another role than the node asks for, and then
// records no Node; a node that asks for none takes the token's role.
func TestJoinRoles(t *testing.T) {
	for _, tc := range []struct {
		name     string
		manager  bool // use the manager token
		desired  *pb.NodeSpec_Role
		csr      bool
		wantRole pb.NodeSpec_Role
		wantErr  []string
	}{
		{name: "worker asks for worker", desired: role(pb.NodeSpec_ROLE_WORKER), csr: true, wantRole: pb.NodeSpec_ROLE_WORKER},
		{name: "manager asks for manager", manager: true, desired: role(pb.NodeSpec_ROLE_MANAGER), csr: true, wantRole: pb.NodeSpec_ROLE_MANAGER},
		{name: "no desired role takes the token's", manager: true, csr: true, wantRole: pb.NodeSpec_ROLE_MANAGER},
		{name: "manager with the worker token", desired: role(pb.NodeSpec_ROLE_MANAGER), csr: true,
			wantErr: []string{"this is a worker join token", "berth cluster join-token manager"}},
		{name: "worker with the manager token", manager: true, desired: role(pb.NodeSpec_ROLE_WORKER), csr: true,
			wantErr: []string{"this is a manager join token", "berth cluster join-token worker"}},
		{name: "bad csr", desired: role(pb.NodeSpec_ROLE_WORKER), wantErr: []string{"csr"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			req := &pb.IssueNodeCertificateRequest{Token: f.worker, DesiredRole: tc.desired, Csr: []byte("not a csr")}
			if tc.manager {
				req.Token = f.manager
			}
			if tc.csr {
				_, csr, err := ca.NewKeyAndCSR()
				if err != nil {
					t.Fatal(err)
				}
				req.Csr = csr
			}
			resp, err := f.srv.IssueNodeCertificate(context.Background(), req)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatalf("joined as %v", resp.GetRole())
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Fatalf("refusal %q does not say %q", err, w)
					}
				}
				if c := status.Code(err); c != codes.PermissionDenied && c != codes.InvalidArgument {
					t.Fatalf("refusal has code %v", c)
				}
				if n := f.nodes(t); len(n) != 0 {
					t.Fatalf("a refused join recorded %d node(s): %v", len(n), n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetRole() != tc.wantRole || (len(resp.GetClusterKey()) != 0) != (tc.wantRole == pb.NodeSpec_ROLE_MANAGER) {
				t.Fatalf("joined as %v with a %d-byte cluster key, want %v", resp.GetRole(), len(resp.GetClusterKey()), tc.wantRole)
			}
			n := f.nodes(t)
			if len(n) != 1 || n[0].GetId() != resp.GetNodeId() || n[0].GetRole() != tc.wantRole {
				t.Fatalf("nodes after the join: %v", n)
			}
		})
	}
}

// lossyProposer applies every batch to its store, but says the outcome of
// the first `lose` of them is unknown, as Raft does when leadership is
// lost after the entry was committed.
type lossyProposer struct {
	st    *store.MemoryStore
	index uint64
	lose  int
}

func (p *lossyProposer) Propose(_ context.Context, b *pb.StoreBatch) (uint64, error) {
	p.index++
	if err := p.st.Apply(p.index, b); err != nil {
		return p.index, err
	}
	if p.lose > 0 {
		p.lose--
		return p.index, store.ErrOutcomeUnknown
	}
	return p.index, nil
}

// TestJoinSurvivesAnUnknownOutcome: a join whose node record was committed
// while leadership was lost still succeeds, and records the node once.
// Before, the joining manager failed to start ("record node: write outcome
// unknown"), as TestRestartAll did under load.
func TestJoinSurvivesAnUnknownOutcome(t *testing.T) {
	f := newFixture(t)
	p := &lossyProposer{}
	st := store.New(p)
	p.st = st
	var cluster *pb.Cluster
	f.st.View(func(tx store.ReadTx) { cluster = tx.GetCluster("c1") })
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.CreateCluster(cluster) }); err != nil {
		t.Fatal(err)
	}
	p.lose = 1
	srv := New(Config{Store: st, ClusterID: "c1", ClusterKey: f.srv.cfg.ClusterKey, Log: slog.New(slog.DiscardHandler)})
	_, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.IssueNodeCertificate(context.Background(), &pb.IssueNodeCertificateRequest{Token: f.manager, Csr: csr})
	if err != nil {
		t.Fatalf("join with an unknown outcome: %v", err)
	}
	var nodes []*pb.Node
	st.View(func(tx store.ReadTx) { nodes, err = tx.FindNodes(store.All) })
	if err != nil || len(nodes) != 1 || nodes[0].GetId() != resp.GetNodeId() {
		t.Fatalf("nodes after the join = %v (err %v), want just %s", nodes, err, resp.GetNodeId())
	}
}
