package admit

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	pb "berth/proto/berth/v1"
	"berth/store"
)

func TestRemovalAndDemotion(t *testing.T) {
	st := store.New(nil)
	node := func(id string, role, desired pb.NodeSpec_Role) *pb.Node {
		return &pb.Node{Id: id, Role: role, Spec: &pb.NodeSpec{DesiredRole: desired}}
	}
	const (
		mgr    = pb.NodeSpec_ROLE_MANAGER
		worker = pb.NodeSpec_ROLE_WORKER
	)
	err := st.Update(context.Background(), func(tx store.Tx) error {
		for _, n := range []*pb.Node{
			node("m1", mgr, mgr),
			node("w1", worker, worker),
			node("demoted", worker, worker),
			node("promoted", worker, mgr), // its manager joins before the role turns
			node("gone", worker, worker),
			node("gone-mgr", worker, worker),
		} {
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		if err := tx.DeleteNode("gone"); err != nil {
			return err
		}
		return tx.DeleteNode("gone-mgr")
	})
	if err != nil {
		t.Fatal(err)
	}
	id := func(node, role string) ca.Identity { return ca.Identity{NodeID: node, Role: role, ClusterID: "c"} }
	for _, tc := range []struct {
		name    string
		id      ca.Identity
		manager bool
		want    string // "" admits
	}{
		{"manager", id("m1", ca.RoleManager), true, ""},
		{"manager's client bundle", id("client-m1", ca.RoleClient), true, ""},
		{"worker, worker call", id("w1", ca.RoleWorker), false, ""},
		{"joining manager not in the store yet", id("new", ca.RoleManager), true, ""},
		{"promoted worker's manager", id("promoted", ca.RoleManager), true, ""},
		{"demoted manager, manager call", id("demoted", ca.RoleManager), true, "node demoted was demoted to a worker"},
		{"demoted manager, worker call", id("demoted", ca.RoleManager), false, ""},
		{"demoted manager's client bundle", id("client-demoted", ca.RoleClient), true, "issued by manager demoted, which was demoted"},
		{"removed worker", id("gone", ca.RoleWorker), false, "node gone was removed from the cluster; join again with a token"},
		{"removed manager", id("gone-mgr", ca.RoleManager), true, "node gone-mgr was removed from the cluster; join again with a token"},
		{"removed manager's client bundle", id("client-gone-mgr", ca.RoleClient), true, "node gone-mgr was removed from the cluster"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			st.View(func(tx store.ReadTx) {
				if err = Removal(tx, tc.id); err == nil && tc.manager {
					err = Demotion(tx, tc.id)
				}
			})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if s := status.Convert(err); s.Code() != codes.PermissionDenied || !strings.Contains(s.Message(), tc.want) {
				t.Fatalf("got %v, want PermissionDenied saying %q", err, tc.want)
			}
		})
	}
}
