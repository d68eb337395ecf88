package manager

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
)

// setRole asks cc to give node id the role, as `berth node promote|demote` does.
func setRole(ctx context.Context, cc pb.ControlClient, id string, role pb.NodeSpec_Role) error {
	got, err := cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: id})
	if err != nil {
		return err
	}
	spec := proto.Clone(got.GetNode().GetSpec()).(*pb.NodeSpec)
	spec.DesiredRole = role
	_, err = cc.UpdateNode(ctx, &pb.UpdateNodeRequest{NodeId: id, NodeVersion: got.GetNode().GetMeta().GetVersion(), Spec: spec})
	return err
}

func wantStatus(t *testing.T, what string, err error, code codes.Code, words ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("%s: %v; want %v", what, err, code)
	}
	for _, w := range words {
		if !strings.Contains(st.Message(), w) {
			t.Fatalf("%s: %q does not say %q", what, st.Message(), w)
		}
	}
}

// TestLastManagerStays: the only manager can be neither demoted nor removed.
func TestLastManagerStays(t *testing.T) {
	c := newTestCluster(t, 1)
	tm := c.mgrs[0]
	cc := tm.control()
	ctx := ctxFor(t, settle)
	wantStatus(t, "demote the last manager", setRole(ctx, cc, tm.m.NodeID(), pb.NodeSpec_ROLE_WORKER),
		codes.FailedPrecondition, "last manager")
	_, err := cc.RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: tm.m.NodeID(), Force: true})
	wantStatus(t, "remove the last manager", err, codes.FailedPrecondition, "is a manager", "demote it first")
	got, err := cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: tm.m.NodeID()})
	if err != nil || got.GetNode().GetRole() != pb.NodeSpec_ROLE_MANAGER || got.GetNode().GetManagerStatus() == nil {
		t.Fatalf("after refusals the manager is %v, %v", got.GetNode(), err)
	}
}

// TestDemote: a follower demoted through another follower leaves Raft and
// is listed as a worker; a demotion that would lose quorum is refused and
// says so; promoting it back, with no agent there to carry it out, leaves
// it a worker.
func TestDemote(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader()
	var followers []*testManager
	for _, tm := range c.mgrs {
		if tm != l {
			followers = append(followers, tm)
		}
	}
	a, b := followers[0], followers[1]
	ctx := ctxFor(t, 2*settle)

	// Demote b through a (a follower): the request reaches the leader.
	if err := setRole(ctx, a.control(), b.m.NodeID(), pb.NodeSpec_ROLE_WORKER); err != nil {
		t.Fatalf("demote %s through follower %s: %v", b.name, a.name, err)
	}
	await.NoError(t, settle, func() error {
		members, err := l.m.Members()
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.GetNodeId() == b.m.NodeID() {
				return status.Errorf(codes.FailedPrecondition, "%s still a raft member", b.name)
			}
		}
		return nil
	}, "demoted %s leaves raft", b.name)
	got, err := l.control().GetNode(ctx, &pb.GetNodeRequest{NodeId: b.m.NodeID()})
	if err != nil {
		t.Fatal(err)
	}
	if got.GetNode().GetRole() != pb.NodeSpec_ROLE_WORKER || got.GetNode().GetManagerStatus() != nil {
		t.Fatalf("demoted node: role %v, manager status %v", got.GetNode().GetRole(), got.GetNode().GetManagerStatus())
	}
	// The two managers left still take writes.
	if _, err := a.control().CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("after-demote")}); err != nil {
		t.Fatal(err)
	}

	// The demoted manager holds no vote and gets no more entries: it stops
	// and says why, rather than serve stale reads or hang.
	select {
	case err := <-b.done:
		b.done <- err
		if !errors.Is(err, ErrRemoved) || !strings.Contains(err.Error(), "--join") {
			t.Fatalf("demoted manager stopped with %v; want ErrRemoved saying how to rejoin", err)
		}
	case <-time.After(settle):
		t.Fatalf("demoted manager %s still runs after %s", b.name, settle)
	}
	// Promoting it back is recorded for the node's agent to carry out
	// (TestPromoteWorkerInPlace); b is a berth-manager with no agent and
	// no vote, so it stays a worker, even when restarted. On etcd no
	// promotion is made (agents have no etcd access): it is refused.
	desired := pb.NodeSpec_ROLE_MANAGER
	err = setRole(ctx, l.control(), b.m.NodeID(), pb.NodeSpec_ROLE_MANAGER)
	switch {
	case etcdtest.OnEtcd():
		desired = pb.NodeSpec_ROLE_WORKER
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "state in etcd") {
			t.Fatalf("promote %s on etcd: %v; want FailedPrecondition saying why", b.name, err)
		}
	case err != nil:
		t.Fatalf("promote %s: %v", b.name, err)
	}
	// Restarted from its data dir, it stops again at once with the reason.
	b.stop()
	if err := b.launch(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-b.done:
		b.done <- err
		if !errors.Is(err, ErrRemoved) {
			t.Fatalf("restarted demoted manager stopped with %v; want ErrRemoved", err)
		}
	case <-time.After(settle):
		t.Fatalf("restarted demoted manager %s still runs after %s", b.name, settle)
	}
	got, err = l.control().GetNode(ctx, &pb.GetNodeRequest{NodeId: b.m.NodeID()})
	if err != nil || got.GetNode().GetRole() != pb.NodeSpec_ROLE_WORKER || got.GetNode().GetSpec().GetDesiredRole() != desired {
		t.Fatalf("promoted node with no agent: %v, %v; want role worker, desired %v", got.GetNode(), err, desired)
	}
}

// TestDemoteRefusedWithoutQuorum: with one of three managers down,
// demoting another would leave the cluster without quorum: refused, with
// the reason.
func TestDemoteRefusedWithoutQuorum(t *testing.T) {
	etcdtest.SkipOnEtcd(t, "quorum among the managers is Raft's; on etcd a demotion needs only another manager (TestLastManagerStays)")
	c := newTestCluster(t, 3)
	l := c.leader()
	var followers []*testManager
	for _, tm := range c.mgrs {
		if tm != l {
			followers = append(followers, tm)
		}
	}
	down, victim := followers[0], followers[1]
	down.stop()
	ctx := ctxFor(t, 2*settle)
	cc := l.control()
	// The operator sees the manager unreachable before acting.
	await.NoError(t, settle, func() error {
		got, err := cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: down.m.NodeID()})
		if err != nil {
			return err
		}
		if r := got.GetNode().GetManagerStatus().GetReachability(); r != pb.ManagerStatus_REACHABILITY_UNREACHABLE {
			return status.Errorf(codes.Unknown, "%s is %v", down.name, r)
		}
		return nil
	}, "the leader reports %s unreachable", down.name)

	wantStatus(t, "demote with a manager down", setRole(ctx, cc, victim.m.NodeID(), pb.NodeSpec_ROLE_WORKER),
		codes.FailedPrecondition, "lose quorum", "1 of the 2 remaining managers are reachable")
	// Through the other follower too.
	wantStatus(t, "demote through a follower with a manager down", setRole(ctx, victim.control(), victim.m.NodeID(), pb.NodeSpec_ROLE_WORKER),
		codes.FailedPrecondition, "lose quorum")
	members, err := l.m.Members()
	if err != nil || len(members) != 3 {
		t.Fatalf("members after refused demotion: %v, %v", members, err)
	}
	got, err := cc.GetNode(ctx, &pb.GetNodeRequest{NodeId: victim.m.NodeID()})
	if err != nil || got.GetNode().GetRole() != pb.NodeSpec_ROLE_MANAGER {
		t.Fatalf("after refused demotion: %v, %v", got.GetNode(), err)
	}
}

// TestDemoteLeader: demoting the leader hands leadership to another
// manager; the old leader leaves Raft and is listed as a worker.
func TestDemoteLeader(t *testing.T) {
	for _, through := range []string{"follower", "leader"} {
		t.Run("through the "+through, func(t *testing.T) { testDemoteLeader(t, through == "leader") })
	}
}

func testDemoteLeader(t *testing.T, throughLeader bool) {
	c := newTestCluster(t, 3)
	old := c.leader()
	f := c.follower()
	via := f
	if throughLeader {
		via = old
	}
	ctx := ctxFor(t, 2*settle)
	if err := setRole(ctx, via.control(), old.m.NodeID(), pb.NodeSpec_ROLE_WORKER); err != nil {
		t.Fatalf("demote the leader %s through %s: %v", old.name, via.name, err)
	}
	select {
	case err := <-old.done:
		old.done <- err
		if !errors.Is(err, ErrRemoved) {
			t.Fatalf("demoted leader stopped with %v; want ErrRemoved", err)
		}
	case <-time.After(settle):
		t.Fatalf("demoted leader %s still runs after %s", old.name, settle)
	}
	old.stop()
	l := c.waitLeader()
	await.NoError(t, settle, func() error {
		got, err := l.control().GetNode(ctx, &pb.GetNodeRequest{NodeId: old.m.NodeID()})
		if err != nil {
			return err
		}
		if got.GetNode().GetRole() != pb.NodeSpec_ROLE_WORKER || got.GetNode().GetManagerStatus() != nil {
			return status.Errorf(codes.Unknown, "demoted leader: role %v, manager status %v", got.GetNode().GetRole(), got.GetNode().GetManagerStatus())
		}
		return nil
	}, "the old leader is listed as a worker")
	if _, err := f.control().CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("after")}); err != nil {
		t.Fatal(err)
	}
}
