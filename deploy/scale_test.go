package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// scaleSize is the shape of a scale run: nodes, replicated services of
// replicas each, one global service, and how many nodes go down.
type scaleSize struct {
	nodes, services, replicas, down int
}

func (s scaleSize) tasks() int { return s.services*s.replicas + s.nodes }

// full is 1,000 nodes and 10,000 tasks: 90 services of 100 replicas and a
// global service on every node.
var full = scaleSize{nodes: 1000, services: 90, replicas: 100, down: 100}

func TestScaleNodesDown(t *testing.T) {
	size := full
	if testing.Short() {
		size = scaleSize{nodes: 200, services: 18, replicas: 100, down: 20}
	}
	converge, recover := runScale(t, size)
	t.Logf("%d nodes, %d tasks (race=%v): converged in %v; %d nodes down, recovered in %v",
		size.nodes, size.tasks(), raceOn, converge, size.down, recover)
}

// BenchmarkScaleNodesDown runs the full-size scenario; the figures are the
// seconds from services created to all tasks running, and from 100 nodes
// down to all tasks running again.
func BenchmarkScaleNodesDown(b *testing.B) {
	for b.Loop() {
		converge, recover := runScale(b, full)
		b.ReportMetric(converge.Seconds(), "converge-s")
		b.ReportMetric(recover.Seconds(), "recover-s")
	}
}

// runScale builds a cluster of fake nodes, runs the orchestrator with an
// in-test scheduler and fake agents until every task runs, takes nodes
// down and waits until every task runs again, while a checker verifies
// that no committed state ever had two live tasks in one slot.
func runScale(tb testing.TB, size scaleSize) (converge, recover time.Duration) {
	// A changelog large enough that the checker, which must see every
	// change, never lags behind a round of 10,000 writes.
	st := store.New(nil, store.WithChangelogSize(4*size.tasks()+10000))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	nodes := make([]string, size.nodes)
	mustBatch(tb, st, func(b *store.Batch) error {
		for i := range nodes {
			nodes[i] = fmt.Sprintf("node-%04d", i)
			n := &pb.Node{Id: nodes[i], Spec: &pb.NodeSpec{}, Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}}
			if err := b.Update(func(tx store.Tx) error { return tx.CreateNode(n) }); err != nil {
				return err
			}
		}
		return nil
	})

	o, err := New(Config{Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	chk := &slotChecker{live: map[unit]map[string]bool{}}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return o.Run(gctx) })
	g.Go(func() error { return simulate(gctx, st) })
	g.Go(func() error { return chk.run(gctx, st) })
	defer func() {
		cancel()
		if err := g.Wait(); err != nil && !errors.Is(err, context.Canceled) {
			tb.Errorf("loops: %v", err)
		}
		if err := chk.failure(); err != nil {
			tb.Error(err)
		}
	}()

	begin := time.Now()
	mustBatch(tb, st, func(b *store.Batch) error {
		for i := 0; i < size.services; i++ {
			s := &pb.Service{Id: fmt.Sprintf("svc-%03d", i), Spec: replicated(fmt.Sprintf("web-%03d", i), int64(size.replicas)), SpecVersion: 1}
			if err := b.Update(func(tx store.Tx) error { return tx.CreateService(s) }); err != nil {
				return err
			}
		}
		return b.Update(func(tx store.Tx) error {
			return tx.CreateService(&pb.Service{Id: "svc-global", Spec: global("node-agent"), SpecVersion: 1})
		})
	})
	awaitRunning(tb, st, size, 0)
	converge = time.Since(begin)

	begin = time.Now()
	mustBatch(tb, st, func(b *store.Batch) error {
		for _, id := range nodes[:size.down] {
			err := b.Update(func(tx store.Tx) error {
				n := proto.Clone(tx.GetNode(id)).(*pb.Node)
				n.Status.State = pb.NodeStatus_STATE_DOWN
				return tx.UpdateNode(n)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	awaitRunning(tb, st, size, size.down)
	recover = time.Since(begin)
	return converge, recover
}

func mustBatch(tb testing.TB, st *store.MemoryStore, cb func(*store.Batch) error) {
	tb.Helper()
	if err := st.Batch(context.Background(), cb); err != nil {
		tb.Fatal(err)
	}
}

// awaitRunning waits until exactly the desired tasks run: replicas per
// replicated service, one global task per node that is up, each on a
// ready node, and nothing else desired running.
func awaitRunning(tb testing.TB, st *store.MemoryStore, size scaleSize, down int) {
	tb.Helper()
	// A full scan costs more than await's poll interval under -race: scan
	// only when the store moved and a quarter second has passed.
	var last time.Time
	var lastIndex uint64
	err := errors.New("not checked yet")
	await.NoError(tb, 3*time.Minute, func() error {
		if time.Since(last) < 250*time.Millisecond || st.Index() == lastIndex {
			return err
		}
		last, lastIndex, err = time.Now(), st.Index(), nil
		st.View(func(tx store.ReadTx) {
			tasks, _ := tx.FindTasks(store.ByDesiredState(running))
			perService := map[string]int{}
			for _, t := range tasks {
				n := tx.GetNode(t.GetNodeId())
				if t.GetStatus().GetState() != running || n.GetStatus().GetState() != pb.NodeStatus_STATE_READY {
					err = fmt.Errorf("task %s of %s is %v on %q", t.GetId(), t.GetServiceId(), t.GetStatus().GetState(), t.GetNodeId())
					return
				}
				perService[t.GetServiceId()]++
			}
			for svc, n := range perService {
				want := size.replicas
				if svc == "svc-global" {
					want = size.nodes - down
				}
				if n != want {
					err = fmt.Errorf("service %s runs %d tasks, want %d", svc, n, want)
					return
				}
			}
			if len(perService) != size.services+1 {
				err = fmt.Errorf("%d services run tasks, want %d", len(perService), size.services+1)
			}
		})
		return err
	}, "every desired task running")
}

// simulate plays the scheduler and the agents: pending tasks go round-robin
// to ready, active nodes (a global task to its own node), assigned tasks on
// ready nodes start, and tasks told to stop on ready nodes stop. Nodes
// that are down do nothing.
func simulate(ctx context.Context, st *store.MemoryStore) error {
	unreported := map[string]bool{}
	w, err := st.ViewAndWatch(ctx, func(tx store.ReadTx) {
		ts, _ := tx.FindTasks(store.All)
		for _, t := range ts {
			unreported[t.GetId()] = true
		}
	}, store.Only[*pb.Task](), store.Only[*pb.Node]())
	if err != nil {
		return err
	}
	defer w.Close()
	var ready []string
	next := 0
	nodesChanged := true
	note := func(ev store.Event) {
		switch o := ev.Object.(type) {
		case *pb.Task:
			unreported[o.GetId()] = true
		case *pb.Node:
			nodesChanged = true
		}
	}
	for {
		if nodesChanged {
			ready, nodesChanged = readyNodes(st), false
		}
		batch := make([]string, 0, len(unreported))
		for id := range unreported {
			batch = append(batch, id)
		}
		clear(unreported)
		err := st.Batch(ctx, func(b *store.Batch) error {
			for _, id := range batch {
				if err := b.Update(func(tx store.Tx) error { return step(tx, id, ready, &next) }); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if !errors.Is(err, store.ErrSequenceConflict) {
				return err
			}
			for _, id := range batch { // someone wrote in between: read and try again
				unreported[id] = true
			}
			continue
		}
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return w.Err()
			}
			note(ev)
			for drained := false; !drained; {
				select {
				case ev, ok := <-w.Events():
					if !ok {
						return w.Err()
					}
					note(ev)
				default:
					drained = true
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
}

func readyNodes(st *store.MemoryStore) []string {
	var out []string
	st.View(func(tx store.ReadTx) {
		ns, _ := tx.FindNodes(store.All)
		for _, n := range ns {
			if n.GetStatus().GetState() == pb.NodeStatus_STATE_READY && n.GetSpec().GetAvailability() == pb.NodeSpec_AVAILABILITY_ACTIVE {
				out = append(out, n.GetId())
			}
		}
	})
	return out
}

// step moves one task one step forward, if it has one to make.
func step(tx store.Tx, id string, ready []string, next *int) error {
	cur := tx.GetTask(id)
	if cur == nil {
		return nil
	}
	node := tx.GetNode(cur.GetNodeId())
	up := node.GetStatus().GetState() == pb.NodeStatus_STATE_READY
	t := proto.Clone(cur).(*pb.Task)
	state := t.GetStatus().GetState()
	switch {
	case t.GetDesiredState() > running && state <= running && (up || state < assigned):
		state = shutdown
	case t.GetDesiredState() != running:
		return nil
	case state == pb.TaskState_TASK_STATE_PENDING && t.GetNodeId() != "":
		if !up || node.GetSpec().GetAvailability() != pb.NodeSpec_AVAILABILITY_ACTIVE {
			return nil
		}
		state = assigned
	case state == pb.TaskState_TASK_STATE_PENDING:
		if len(ready) == 0 {
			return nil
		}
		t.NodeId = ready[*next%len(ready)]
		*next++
		state = assigned
	case state == assigned && up:
		state = running
	default:
		return nil
	}
	t.Status = &pb.TaskStatus{State: state, Timestamp: timestamppb.Now()}
	return tx.UpdateTask(t)
}

// slotChecker follows every committed change and records the first state
// in which a slot (or a global node) held two live tasks.
type slotChecker struct {
	live map[unit]map[string]bool

	mu  sync.Mutex
	err error
}

func (c *slotChecker) run(ctx context.Context, st *store.MemoryStore) error {
	w, err := st.Watch(ctx, 0, store.Only[*pb.Task]())
	if err != nil {
		return err
	}
	defer w.Close()
	var index uint64
	touched := map[unit]bool{}
	for ev := range w.Events() {
		if ev.Index != index {
			c.check(index, touched)
			index = ev.Index
		}
		t := ev.Object.(*pb.Task)
		u := unitOf(t)
		touched[u] = true
		if c.live[u] == nil {
			c.live[u] = map[string]bool{}
		}
		if ev.Kind != store.EventDelete && t.GetDesiredState() <= running {
			c.live[u][t.GetId()] = true
		} else {
			delete(c.live[u], t.GetId())
		}
	}
	return w.Err()
}

// check runs at the end of each committed entry, over the units it touched.
func (c *slotChecker) check(index uint64, touched map[unit]bool) {
	for u := range touched {
		if n := len(c.live[u]); n > 1 {
			c.mu.Lock()
			if c.err == nil {
				c.err = fmt.Errorf("at index %d, unit %+v holds %d live tasks", index, u, n)
			}
			c.mu.Unlock()
		}
	}
	clear(touched)
}

func (c *slotChecker) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}
