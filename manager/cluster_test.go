package manager

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/internal/await"
	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
)

// TestThreeManagers: a bootstrapped manager and two that joined with the
// manager token form one cluster; a write through a follower is readable
// on every manager, and node ls shows three managers, one leader.
func TestThreeManagers(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.follower()
	ctx := ctxFor(t, settle)
	if _, err := f.control().CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("web")}); err != nil {
		t.Fatalf("create a service through follower %s: %v", f.name, err)
	}
	// Reads are consistent: each manager sees the write at once.
	for _, tm := range c.mgrs {
		got, err := tm.control().GetService(ctx, &pb.GetServiceRequest{ServiceId: "web"})
		if err != nil {
			t.Fatalf("get service on %s: %v", tm.name, err)
		}
		if got.GetService().GetSpec().GetTask().GetContainer().GetImage() != "busybox:latest" {
			t.Fatalf("service on %s: %v", tm.name, got.GetService())
		}
	}

	var ids []string
	for _, tm := range c.mgrs {
		ids = append(ids, tm.m.NodeID())
	}
	l := c.leader()
	// The leader hears every member's heartbeats, so it reports all as
	// reachable; followers know only themselves and the leader.
	await.NoError(t, settle, func() error {
		return checkNodeList(ctx, l.control(), ids, l.m.NodeID(), true)
	}, "node ls on the leader")
	if err := checkNodeList(ctx, f.control(), ids, l.m.NodeID(), false); err != nil {
		t.Fatalf("node ls on a follower: %v", err)
	}

	// GetCluster names the same cluster, members and leader everywhere.
	for _, tm := range c.mgrs {
		resp, err := tm.control().GetCluster(ctx, &pb.GetClusterRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetCluster().GetId() != c.mgrs[0].m.clusterID || len(resp.GetMembers()) != 3 || resp.GetLeaderAddr() != l.m.advertise {
			t.Fatalf("cluster on %s: id %s, %d members, leader %s", tm.name, resp.GetCluster().GetId(), len(resp.GetMembers()), resp.GetLeaderAddr())
		}
		if resp.GetCluster().GetRootCa().GetCaKey() != nil || resp.GetCluster().GetJoinTokens() != nil {
			t.Fatalf("GetCluster on %s leaks the CA key or join tokens", tm.name)
		}
	}
}

// checkNodeList checks that node ls shows exactly the managers ids, ready,
// with leader as the one leader; allReachable asks that every manager be
// reported reachable.
func checkNodeList(ctx context.Context, cc pb.ControlClient, ids []string, leader string, allReachable bool) error {
	resp, err := cc.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return err
	}
	if len(resp.GetNodes()) != len(ids) {
		return fmt.Errorf("%d nodes listed, want %d: %v", len(resp.GetNodes()), len(ids), resp.GetNodes())
	}
	want := map[string]bool{}
	for _, id := range ids {
		want[id] = true
	}
	leaders := 0
	for _, n := range resp.GetNodes() {
		ms := n.GetManagerStatus()
		switch {
		case !want[n.GetId()]:
			return fmt.Errorf("unexpected node %s", n.GetId())
		case n.GetRole() != pb.NodeSpec_ROLE_MANAGER || ms == nil:
			return fmt.Errorf("node %s: role %v, manager status %v", n.GetId(), n.GetRole(), ms)
		case n.GetStatus().GetState() != pb.NodeStatus_STATE_READY:
			return fmt.Errorf("node %s is %v", n.GetId(), n.GetStatus().GetState())
		case ms.GetLeader() != (n.GetId() == leader):
			return fmt.Errorf("node %s: leader=%v, the leader is %s", n.GetId(), ms.GetLeader(), leader)
		case ms.GetLeader() && ms.GetReachability() != pb.ManagerStatus_REACHABILITY_REACHABLE:
			return fmt.Errorf("leader %s is %v", n.GetId(), ms.GetReachability())
		case allReachable && ms.GetReachability() != pb.ManagerStatus_REACHABILITY_REACHABLE:
			return fmt.Errorf("manager %s is %v", n.GetId(), ms.GetReachability())
		}
		if ms.GetLeader() {
			leaders++
		}
	}
	if leaders != 1 {
		return fmt.Errorf("%d leaders listed", leaders)
	}
	return nil
}

// TestLeaderFailover: with five managers, stopping the leader leaves four
// that elect another and take writes through a follower; every write a
// client saw acknowledged, before or during the failover, survives.
func TestLeaderFailover(t *testing.T) {
	c := newTestCluster(t, 5)
	old := c.waitLeader()

	var mu sync.Mutex
	acked := map[string]bool{}
	create := func(tm *testManager, name string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := tm.control().CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec(name)})
		if err == nil {
			mu.Lock()
			acked[name] = true
			mu.Unlock()
		}
		return err
	}
	for i := range 5 {
		if err := create(c.mgrs[i], fmt.Sprintf("before-%d", i)); err != nil {
			t.Fatal(err)
		}
	}

	// Writers on the followers keep writing while the leader goes away;
	// some writes fail, none that succeeded may be lost.
	stopWriters := make(chan struct{})
	var wg sync.WaitGroup
	for _, tm := range c.mgrs {
		if tm == old {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stopWriters:
					return
				default:
				}
				_ = create(tm, fmt.Sprintf("during-%s-%d", tm.name, i))
			}
		}()
	}
	old.stop()
	l := c.waitLeader()
	if l == old {
		t.Fatal("the stopped manager still leads")
	}
	f := c.follower()
	// A fresh name per attempt: an attempt whose outcome was unknown may
	// have committed, and retrying its name would fail as a duplicate.
	attempt := 0
	await.NoError(t, settle, func() error {
		attempt++
		return create(f, fmt.Sprintf("after-%d", attempt))
	}, "write through follower %s after failover", f.name)
	close(stopWriters)
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	for _, tm := range c.mgrs {
		if !tm.running() {
			continue
		}
		got, err := serviceNames(ctxFor(t, settle), tm.control())
		if err != nil {
			t.Fatalf("list services on %s: %v", tm.name, err)
		}
		for name := range acked {
			if !got[name] {
				t.Errorf("manager %s lost acknowledged service %s", tm.name, name)
			}
		}
	}
	t.Logf("%d writes acknowledged", len(acked))
}

// TestRestartAll: managers stopped together and started again from their
// data dirs alone come back as the same cluster with the same state.
func TestRestartAll(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxFor(t, 2*settle)
	cc := c.follower().control()
	for i := range 3 {
		if _, err := cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec(fmt.Sprintf("svc-%d", i))}); err != nil {
			t.Fatal(err)
		}
	}
	clusterID := c.mgrs[0].m.clusterID
	before, err := serviceNames(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	nodeIDs := map[string]string{}
	for _, tm := range c.mgrs {
		nodeIDs[tm.name] = tm.m.NodeID()
	}

	for _, tm := range c.mgrs {
		tm.stop()
	}
	for _, tm := range c.mgrs {
		tm.cfg.Join, tm.cfg.Token = nil, ""
		// Started together, as after a power cut: each waits for the others.
		if err := tm.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tm := range c.mgrs {
		if err := tm.waitReady(); err != nil {
			t.Fatalf("restart %s: %v", tm.name, err)
		}
	}
	c.waitLeader()
	c.waitMembers(3)
	for _, tm := range c.mgrs {
		if tm.m.clusterID != clusterID || tm.m.NodeID() != nodeIDs[tm.name] {
			t.Fatalf("manager %s came back as node %s of cluster %s, was %s of %s", tm.name, tm.m.NodeID(), tm.m.clusterID, nodeIDs[tm.name], clusterID)
		}
		var after map[string]bool
		await.NoError(t, settle, func() (err error) { after, err = serviceNames(ctx, tm.control()); return err }, "list services on %s", tm.name)
		if len(after) != len(before) {
			t.Fatalf("services on %s after restart: %v, before: %v", tm.name, after, before)
		}
		for name := range before {
			if !after[name] {
				t.Fatalf("service %s missing on %s after restart", name, tm.name)
			}
		}
	}
	// And the cluster takes writes again.
	if _, err := c.follower().control().CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("after-restart")}); err != nil {
		t.Fatal(err)
	}
}

// TestQuorumLoss: with two of three managers gone, a write and a read on
// the survivor fail promptly with Unavailable saying quorum is lost.
func TestQuorumLoss(t *testing.T) {
	etcdtest.SkipOnEtcd(t, "the managers' quorum is Raft's; on etcd they need none among themselves (TestEtcdLost covers losing etcd)")
	c := newTestCluster(t, 3)
	survivor := c.mgrs[2]
	cc := survivor.control()
	c.mgrs[0].stop()
	c.mgrs[1].stop()
	// The survivor may have led; it steps down within the lease timeout.
	await.True(t, settle, func() bool {
		_, addr := survivor.m.Raft().Leader()
		return !survivor.m.Raft().IsLeader() && addr == ""
	}, "the survivor knows it has no leader")

	for _, op := range []struct {
		name string
		call func(context.Context) error
	}{
		{"create service", func(ctx context.Context) error {
			_, err := cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("lost")})
			return err
		}},
		{"list services", func(ctx context.Context) error {
			_, err := cc.ListServices(ctx, &pb.ListServicesRequest{})
			return err
		}},
	} {
		// The deadline is far beyond the answer's bound: a hang fails
		// with DeadlineExceeded, not with the Unavailable we want.
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := op.call(ctx)
		cancel()
		st := status.Convert(err)
		if st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "no quorum") || !strings.Contains(st.Message(), "1 of 3 managers reachable") {
			t.Errorf("%s without quorum: %v; want Unavailable naming the lost quorum", op.name, err)
		}
	}
}

// TestStopIsClean: a manager whose context ends stops without an error
// (an operator's Ctrl-C or SIGTERM is no failure), again and again.
func TestStopIsClean(t *testing.T) {
	tm := newTestManager(t, "m0")
	for i := range 5 {
		tm.mustStart()
		tm.waitBundle()
		if err := tm.halt(); err != nil {
			t.Fatalf("stop %d: Run returned %v", i, err)
		}
	}
}
