package manager

import (
	"testing"

	pb "berth/proto/berth/v1"
)

// TestFollowerWritesSeeAcknowledgedWrites: a write acknowledged through
// the leader is visible to a write that starts after it on a follower, as
// it is to a read there. A follower checks a write against its own copy
// of the store, which may not have applied the leader's last entry yet:
// before the fix, re-creating a name just removed through another manager
// was refused as taken, and removing a service just created was refused
// as not found. The fault suite (e2e/faults) found this as a
// non-linearizable history.
func TestFollowerWritesSeeAcknowledgedWrites(t *testing.T) {
	c := newTestCluster(t, 3)
	l, f := c.waitLeader(), c.follower()
	ctx := ctxFor(t, 2*settle)
	lc, fc := l.control(), f.control()
	for i := range 30 {
		if _, err := lc.CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("web")}); err != nil {
			t.Fatalf("round %d: create through leader %s: %v", i, l.name, err)
		}
		if _, err := fc.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: "web"}); err != nil {
			t.Fatalf("round %d: remove through follower %s right after the leader acknowledged the create: %v", i, f.name, err)
		}
		if _, err := lc.GetService(ctx, &pb.GetServiceRequest{ServiceId: "web"}); err == nil {
			t.Fatalf("round %d: the leader still reads the service its follower removed", i)
		}
	}
	for i := range 30 {
		if _, err := lc.CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("api")}); err != nil {
			t.Fatalf("round %d: create through leader %s: %v", i, l.name, err)
		}
		if _, err := lc.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: "api"}); err != nil {
			t.Fatalf("round %d: remove through leader: %v", i, err)
		}
		if _, err := fc.CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("api")}); err != nil {
			t.Fatalf("round %d: create through follower %s right after the leader acknowledged the remove: %v", i, f.name, err)
		}
		if _, err := lc.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: "api"}); err != nil {
			t.Fatalf("round %d: remove through leader: %v", i, err)
		}
	}
}
