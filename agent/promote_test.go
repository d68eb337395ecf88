package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"berth/ca"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestAgentLearnsPromotion: the desired role a session carries reaches
// OnDesiredRole; a manager certificate is refused while the node is not
// promoted and, once it is, issued for the node's own ID with the cluster
// key and the managers to join through.
func TestAgentLearnsPromotion(t *testing.T) {
	needRoot(t)
	c := newFakeCluster(t)
	c.clusterKey = []byte("0123456789abcdef0123456789abcdef")
	m := startFakeManager(t, c, "mgr1")

	var mu sync.Mutex
	var roles []pb.NodeSpec_Role
	seen := func(want pb.NodeSpec_Role) bool {
		mu.Lock()
		defer mu.Unlock()
		return len(roles) > 0 && roles[len(roles)-1] == want
	}
	a, err := New(Config{
		DataDir: testDir(t), Join: []string{m.addr}, Token: c.token.String(), CgroupParent: cgroupParent(),
		Logger: slog.New(slog.DiscardHandler),
		OnDesiredRole: func(r pb.NodeSpec_Role) {
			mu.Lock()
			defer mu.Unlock()
			roles = append(roles, r)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	await.True(t, 20*time.Second, func() bool { return seen(pb.NodeSpec_ROLE_WORKER) }, "the first session message says: worker")
	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	if _, err := a.ManagerCertificate(cctx); !errors.Is(err, ErrNotPromoted) {
		t.Fatalf("manager certificate before promotion: %v; want ErrNotPromoted", err)
	}

	c.setPromoted(true)
	await.True(t, 20*time.Second, func() bool { return seen(pb.NodeSpec_ROLE_MANAGER) }, "the session says: manager")
	id, err := a.ManagerCertificate(cctx)
	if err != nil {
		t.Fatalf("manager certificate after promotion: %v", err)
	}
	creds, err := ca.NewCredentials(id.RootPEM, id.CertPEM, id.KeyPEM)
	if err != nil {
		t.Fatalf("the manager identity does not load: %v", err)
	}
	if got := creds.Identity(); got.Role != ca.RoleManager || got.NodeID != a.NodeID() || id.NodeID != a.NodeID() {
		t.Fatalf("manager identity %+v (node %s); want a manager certificate for node %s", got, id.NodeID, a.NodeID())
	}
	if !bytes.Equal(id.ClusterKey, c.clusterKey) || !slices.Contains(id.Managers, m.addr) {
		t.Fatalf("cluster key %q, managers %v; want the cluster's key and %s", id.ClusterKey, id.Managers, m.addr)
	}

	c.setPromoted(false)
	await.True(t, 20*time.Second, func() bool { return seen(pb.NodeSpec_ROLE_WORKER) }, "the session says: worker again")
}
