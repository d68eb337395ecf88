package assign_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/deploy"
	"berth/internal/await"
	"berth/manager/assign"
	"berth/overlay/allocator"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// This file runs a rolling update through the leader's real loops (the
// orchestrator, the allocator, the assigner and the updater) with fake agents, and
// changes leader in the middle of it.

const updateID = "svc-rolling"

// rollingCluster is the Cluster object whose pool the allocator uses.
const rollingCluster = "rolling-cluster"

// loops runs a leader's loops until stop is called.
type loops struct {
	cancel context.CancelFunc
	g      *errgroup.Group
}

func startLoops(t *testing.T, st *store.MemoryStore) *loops {
	t.Helper()
	orch, err := deploy.New(deploy.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	upd, err := deploy.NewUpdater(deploy.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	asg, err := assign.New(assign.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	alloc, err := allocator.New(allocator.Config{Store: st, ClusterID: rollingCluster})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return orch.Run(gctx) })
	g.Go(func() error { return alloc.Run(gctx) })
	g.Go(func() error { return upd.Run(gctx) })
	g.Go(func() error { return asg.Run(gctx) })
	l := &loops{cancel: cancel, g: g}
	t.Cleanup(func() { l.stop(t) })
	return l
}

func (l *loops) stop(t *testing.T) {
	l.cancel()
	if err := l.g.Wait(); err != nil {
		t.Errorf("leader loops: %v", err)
	}
}

// rollingEnv is a store with 4 nodes of 4 CPUs, fake agents, and a
// service of 12 replicas reserving one CPU each, all running.
func rollingEnv(t *testing.T, order pb.UpdateConfig_Order, parallelism uint64, delay time.Duration) *store.MemoryStore {
	t.Helper()
	st := store.New(nil, store.WithChangelogSize(100000))
	size := scaleSize{nodes: 4}
	mustBatch(t, st, func(b *store.Batch) error {
		if err := b.Update(func(tx store.Tx) error { return tx.CreateCluster(&pb.Cluster{Id: rollingCluster}) }); err != nil {
			return err
		}
		for i := range size.nodes {
			if err := b.Update(func(tx store.Tx) error { return tx.CreateNode(scaleNode(size, i)) }); err != nil {
				return err
			}
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	agents := newFleet()
	done := make(chan error, 1)
	go func() { done <- agents.run(ctx, st) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("fake agents: %v", err)
		}
	})
	spec := &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: "rolling"},
		Replicas:    proto.Int64(12),
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{Image: "app:v1"},
			Resources: &pb.Resources{Reservations: &pb.ResourceSet{NanoCpus: cpu}},
		},
		Update: &pb.UpdateConfig{Parallelism: parallelism, Order: order, Monitor: durationpb.New(0), Delay: durationpb.New(delay)},
	}
	mustBatch(t, st, func(b *store.Batch) error {
		return b.Update(func(tx store.Tx) error {
			return tx.CreateService(&pb.Service{Id: updateID, Spec: spec, SpecVersion: 1})
		})
	})
	return st
}

// awaitImage waits until every slot runs image and the update status is st.
func awaitImage(t *testing.T, s *store.MemoryStore, image string, state pb.UpdateStatus_State) {
	t.Helper()
	awaitImageN(t, s, image, state, 12)
}

func awaitImageN(t *testing.T, s *store.MemoryStore, image string, state pb.UpdateStatus_State, want int) {
	t.Helper()
	await.NoError(t, 30*time.Second, func() error {
		var err error
		s.View(func(tx store.ReadTx) {
			tasks, _ := tx.FindTasks(store.ByServiceID(updateID))
			n := 0
			for _, tk := range tasks {
				if tk.GetDesiredState() == running && tk.GetStatus().GetState() == running && tk.GetSpec().GetContainer().GetImage() == image {
					n++
				}
			}
			got := tx.GetService(updateID).GetUpdateStatus().GetState()
			if n != want || got != state {
				err = fmt.Errorf("%d of %d units run %s, update status %v (want %v)", n, want, image, got, state)
			}
		})
		return err
	}, "service on %s", image)
}

// updateTo changes the service's image as the Control API does.
func updateTo(t *testing.T, s *store.MemoryStore, image string) {
	t.Helper()
	mustBatch(t, s, func(b *store.Batch) error {
		return b.Update(func(tx store.Tx) error {
			svc := proto.Clone(tx.GetService(updateID)).(*pb.Service)
			svc.PreviousSpec = proto.Clone(svc.Spec).(*pb.ServiceSpec)
			svc.Spec.Task.Container.Image = image
			svc.SpecVersion++
			svc.UpdateStatus = &pb.UpdateStatus{State: pb.UpdateStatus_STATE_UPDATING, StartedAt: timestamppb.Now()}
			return tx.UpdateService(svc)
		})
	})
}

// updateChecker follows every commit of the service's tasks and records
// the worst moment of the rollout.
type updateChecker struct {
	tasks map[string]*pb.Task
	// maxDown is the most slots without a running task desired running;
	// maxLive the most tasks desired running; overcommit a node holding
	// more reservations than it has.
	maxDown, maxLive int
	overcommit       string
	created          map[string]map[string]int // slot or node → image → tasks made
	units            int                       // slots or nodes the service holds
}

// key names a task's unit: its slot, or its node for a global service.
func key(tk *pb.Task) string {
	if tk.GetSlot() > 0 {
		return fmt.Sprint(tk.GetSlot())
	}
	return tk.GetNodeId()
}

func watchUpdate(t *testing.T, st *store.MemoryStore, units int) func() *updateChecker {
	t.Helper()
	c := &updateChecker{tasks: map[string]*pb.Task{}, created: map[string]map[string]int{}, units: units}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := st.ViewAndWatch(ctx, func(tx store.ReadTx) {
		ts, _ := tx.FindTasks(store.ByServiceID(updateID))
		for _, tk := range ts {
			c.tasks[tk.GetId()] = tk
		}
	}, store.Only[*pb.Task]())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var index uint64
		for ev := range w.Events() {
			if ev.Index != index {
				c.check(st)
				index = ev.Index
			}
			tk := ev.Object.(*pb.Task)
			if ev.Kind == store.EventCreate {
				if c.created[key(tk)] == nil {
					c.created[key(tk)] = map[string]int{}
				}
				c.created[key(tk)][tk.GetSpec().GetContainer().GetImage()]++
			}
			if ev.Kind == store.EventDelete {
				delete(c.tasks, tk.GetId())
			} else {
				c.tasks[tk.GetId()] = tk
			}
		}
	}()
	return func() *updateChecker {
		cancel()
		w.Close()
		<-done
		c.check(st)
		return c
	}
}

func (c *updateChecker) check(st *store.MemoryStore) {
	up := map[string]bool{}
	held := map[string]int64{}
	live := 0
	for _, tk := range c.tasks {
		if tk.GetDesiredState() > running {
			continue
		}
		live++
		if tk.GetStatus().GetState() == running {
			up[key(tk)] = true
		}
		if tk.GetNodeId() != "" {
			held[tk.GetNodeId()] += tk.GetSpec().GetResources().GetReservations().GetNanoCpus()
		}
	}
	c.maxDown = max(c.maxDown, c.units-len(up))
	c.maxLive = max(c.maxLive, live)
	for n, cpus := range held {
		if cpus > 4*cpu && c.overcommit == "" {
			c.overcommit = fmt.Sprintf("node %s holds %d nano CPUs of 4 CPUs", n, cpus)
		}
	}
}

// TestRollingUpdateLeaderChange stops the leader's loops in the middle of
// a stop-first update (in the delay after its first batch) and starts a
// new set: the new leader finishes the
// update, each slot gets exactly one v2 task, and no more than parallelism
// slots were ever down.
func TestRollingUpdateLeaderChange(t *testing.T) {
	st := rollingEnv(t, pb.UpdateConfig_ORDER_STOP_FIRST, 3, 500*time.Millisecond)
	first := startLoops(t, st)
	awaitImage(t, st, "app:v1", pb.UpdateStatus_STATE_UNKNOWN)
	finish := watchUpdate(t, st, 12)
	updateTo(t, st, "app:v2")
	await.True(t, 30*time.Second, func() bool {
		n := 0
		st.View(func(tx store.ReadTx) {
			ts, _ := tx.FindTasks(store.ByServiceID(updateID))
			for _, tk := range ts {
				if tk.GetSpec().GetContainer().GetImage() == "app:v2" {
					n++
				}
			}
		})
		return n >= 3
	}, "first batch of v2 tasks")
	first.stop(t) // the leader is gone mid-update
	st.View(func(tx store.ReadTx) {
		if s := tx.GetService(updateID).GetUpdateStatus().GetState(); s != pb.UpdateStatus_STATE_UPDATING {
			t.Fatalf("the first leader stopped with the update %v; the test wants it stopped midway (the delay between batches is 500ms)", s)
		}
	})
	startLoops(t, st)
	awaitImage(t, st, "app:v2", pb.UpdateStatus_STATE_COMPLETED)
	c := finish()
	for slot := uint64(1); slot <= 12; slot++ {
		if n := c.created[fmt.Sprint(slot)]["app:v2"]; n != 1 {
			t.Errorf("slot %d got %d v2 tasks, want exactly 1", slot, n)
		}
	}
	if c.maxDown > 3 {
		t.Errorf("%d slots were down at once, parallelism is 3", c.maxDown)
	}
	t.Logf("leader change mid-update: each slot updated once; at most %d slots down", c.maxDown)
}

// TestRollingUpdateStartFirstResources updates a service whose nodes have
// room for exactly parallelism extra tasks, start-first: the scheduler
// never places more than a node holds, and never more than parallelism
// extra tasks run.
func TestRollingUpdateStartFirstResources(t *testing.T) {
	st := rollingEnv(t, pb.UpdateConfig_ORDER_START_FIRST, 4, 0)
	startLoops(t, st)
	awaitImage(t, st, "app:v1", pb.UpdateStatus_STATE_UNKNOWN)
	finish := watchUpdate(t, st, 12)
	updateTo(t, st, "app:v2")
	awaitImage(t, st, "app:v2", pb.UpdateStatus_STATE_COMPLETED)
	c := finish()
	if c.overcommit != "" {
		t.Error(c.overcommit)
	}
	if c.maxLive > 12+4 {
		t.Errorf("%d tasks desired running at once, want at most 12 + parallelism 4", c.maxLive)
	}
	if c.maxDown != 0 {
		t.Errorf("start-first left %d slots without a running task", c.maxDown)
	}
	for slot := uint64(1); slot <= 12; slot++ {
		if n := c.created[fmt.Sprint(slot)]["app:v2"]; n != 1 {
			t.Errorf("slot %d got %d v2 tasks, want exactly 1", slot, n)
		}
	}
	t.Logf("start-first: at most %d live tasks (12 replicas, parallelism 4), no node over its reservations", c.maxLive)
}

// TestRollingUpdateGlobal updates a global service on 4 nodes node by
// node (parallelism 1): each node gets one new task, one node at a time.
func TestRollingUpdateGlobal(t *testing.T) {
	st := rollingEnv(t, pb.UpdateConfig_ORDER_STOP_FIRST, 1, 0)
	mustBatch(t, st, func(b *store.Batch) error {
		return b.Update(func(tx store.Tx) error {
			svc := proto.Clone(tx.GetService(updateID)).(*pb.Service)
			svc.Spec.Mode, svc.Spec.Replicas = pb.ServiceMode_SERVICE_MODE_GLOBAL, nil
			return tx.UpdateService(svc)
		})
	})
	startLoops(t, st)
	awaitImageN(t, st, "app:v1", pb.UpdateStatus_STATE_UNKNOWN, 4)
	finish := watchUpdate(t, st, 4)
	updateTo(t, st, "app:v2")
	awaitImageN(t, st, "app:v2", pb.UpdateStatus_STATE_COMPLETED, 4)
	c := finish()
	if len(c.created) != 4 {
		t.Errorf("new tasks on %d nodes, want 4: %v", len(c.created), c.created)
	}
	for node, made := range c.created {
		if made["app:v2"] != 1 {
			t.Errorf("node %s got %d v2 tasks, want 1", node, made["app:v2"])
		}
	}
	if c.maxDown > 1 {
		t.Errorf("%d nodes without a running task at once, parallelism is 1", c.maxDown)
	}
}
