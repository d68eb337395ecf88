package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	"berth/internal/ids"
	pb "berth/proto/berth/v1"
	"berth/store"
)

const wait = 10 * time.Second

var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

// fakeClock is a clock tests move by hand; After channels fire on Advance.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: t0} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	at := c.now.Add(d)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, waiter{at, ch})
	return ch
}

// Advance moves the clock and fires the waiters that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.waiters = slices.DeleteFunc(c.waiters, func(w waiter) bool {
		if w.at.After(c.now) {
			return false
		}
		w.ch <- c.now
		return true
	})
}

// waitingFor reports whether someone waits for the clock to reach at.
func (c *fakeClock) waitingFor(at time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.waiters, func(w waiter) bool { return w.at.Equal(at) })
}

// env is a store, a fake clock and a running orchestrator.
type env struct {
	t     *testing.T
	st    *store.MemoryStore
	clock *fakeClock
	ctx   context.Context
}

// start runs an orchestrator over st until the test ends.
func start(t *testing.T, st *store.MemoryStore, clock *fakeClock, history int) *env {
	t.Helper()
	o, err := New(Config{Store: st, Now: clock.Now, After: clock.After, ReaperHistory: history})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return &env{t: t, st: st, clock: clock, ctx: ctx}
}

// newEnv is a fresh store with an orchestrator keeping history tasks.
func newEnv(t *testing.T, history int) *env {
	t.Helper()
	clock := newFakeClock()
	return start(t, store.New(nil, store.WithClock(clock.Now)), clock, history)
}

func (e *env) update(cb func(tx store.Tx) error) {
	e.t.Helper()
	if err := e.st.Update(context.Background(), cb); err != nil {
		e.t.Fatalf("update: %v", err)
	}
}

func (e *env) addNode(id string, labels map[string]string) {
	e.t.Helper()
	e.update(func(tx store.Tx) error {
		return tx.CreateNode(&pb.Node{
			Id:     id,
			Spec:   &pb.NodeSpec{Annotations: &pb.Annotations{Labels: labels}},
			Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY},
		})
	})
}

func (e *env) changeNode(id string, change func(n *pb.Node)) {
	e.t.Helper()
	e.update(func(tx store.Tx) error {
		n := proto.Clone(tx.GetNode(id)).(*pb.Node)
		change(n)
		return tx.UpdateNode(n)
	})
}

func (e *env) setNodeState(id string, s pb.NodeStatus_State) {
	e.t.Helper()
	e.changeNode(id, func(n *pb.Node) { n.Status.State = s })
}

func (e *env) setAvailability(id string, a pb.NodeSpec_Availability) {
	e.t.Helper()
	e.changeNode(id, func(n *pb.Node) { n.Spec.Availability = a })
}

// touchNode changes a node's labels, which makes the orchestrator plan
// every unit with a task on it again.
func (e *env) touchNode(id string) {
	e.t.Helper()
	e.changeNode(id, func(n *pb.Node) {
		if n.Spec.Annotations == nil {
			n.Spec.Annotations = &pb.Annotations{}
		}
		n.Spec.Annotations.Labels = map[string]string{"touched": ids.New()}
	})
}

// replicated returns a replicated service spec with n replicas and an
// immediate restart on any exit.
func replicated(name string, n int64) *pb.ServiceSpec {
	return &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: name},
		Replicas:    proto.Int64(n),
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{Image: "busybox"},
			Restart:   &pb.RestartPolicy{Delay: durationpb.New(0)},
		},
	}
}

func global(name string, constraints ...string) *pb.ServiceSpec {
	return &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: name},
		Mode:        pb.ServiceMode_SERVICE_MODE_GLOBAL,
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{Image: "busybox"},
			Placement: &pb.Placement{Constraints: constraints},
		},
	}
}

// createService stores a service as the Control API does.
func (e *env) createService(spec *pb.ServiceSpec) string {
	e.t.Helper()
	id := ids.New()
	e.update(func(tx store.Tx) error {
		return tx.CreateService(&pb.Service{Id: id, Spec: spec, SpecVersion: 1})
	})
	return id
}

func (e *env) changeService(id string, change func(s *pb.ServiceSpec)) {
	e.t.Helper()
	e.update(func(tx store.Tx) error {
		s := proto.Clone(tx.GetService(id)).(*pb.Service)
		s.PreviousSpec = proto.Clone(s.Spec).(*pb.ServiceSpec)
		change(s.Spec)
		s.SpecVersion++
		return tx.UpdateService(s)
	})
}

func (e *env) tasks(service string) []*pb.Task {
	var out []*pb.Task
	e.st.View(func(tx store.ReadTx) { out, _ = tx.FindTasks(store.ByServiceID(service)) })
	return out
}

// live is the tasks the orchestrator wants running.
func (e *env) live(service string) []*pb.Task {
	return slices.DeleteFunc(e.tasks(service), func(t *pb.Task) bool { return t.GetDesiredState() > running })
}

// slots maps each slot (or node, for global services) to its live task.
func (e *env) slots(service string) (map[string]*pb.Task, error) {
	out := map[string]*pb.Task{}
	for _, t := range e.live(service) {
		k := fmt.Sprint(t.GetSlot())
		if t.GetSlot() == 0 {
			k = t.GetNodeId()
		}
		if o := out[k]; o != nil {
			return nil, fmt.Errorf("slot %s holds two live tasks: %s and %s", k, o.GetId(), t.GetId())
		}
		out[k] = t
	}
	return out, nil
}

// awaitSlots waits until the live tasks of a service sit in exactly keys.
func (e *env) awaitSlots(service string, keys ...string) map[string]*pb.Task {
	e.t.Helper()
	var got map[string]*pb.Task
	await.NoError(e.t, wait, func() error {
		var err error
		if got, err = e.slots(service); err != nil {
			return err
		}
		var have []string
		for k := range got {
			have = append(have, k)
		}
		slices.Sort(have)
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(have, want) {
			return fmt.Errorf("live tasks in %v, want %v", have, want)
		}
		return nil
	}, "live tasks of %s", service)
	return got
}

// setStatus plays the scheduler and the agent: it moves a task to state,
// on node when node is set.
func (e *env) setStatus(id string, state pb.TaskState, node string, change ...func(*pb.TaskStatus)) {
	e.t.Helper()
	e.update(func(tx store.Tx) error {
		cur := tx.GetTask(id)
		if cur == nil {
			return errors.New("no task " + id)
		}
		t := proto.Clone(cur).(*pb.Task)
		if node != "" {
			t.NodeId = node
		}
		t.Status = &pb.TaskStatus{State: state, Timestamp: timestamppb.New(e.clock.Now()), Container: t.GetStatus().GetContainer()}
		for _, c := range change {
			c(t.Status)
		}
		return tx.UpdateTask(t)
	})
}

// runOn starts a task on a node: assigned, then running.
func (e *env) runOn(id, node string) {
	e.t.Helper()
	e.setStatus(id, pb.TaskState_TASK_STATE_RUNNING, node, func(s *pb.TaskStatus) {
		s.Container = &pb.ContainerStatus{StartedAt: timestamppb.New(e.clock.Now())}
	})
}

// barrier waits until the orchestrator has handled every change made so
// far: it creates a probe service and waits for its task. The orchestrator
// reads events in order and plans everything dirty in one round written in
// one batch, so anything it decides about earlier changes is in the store
// by the time the probe's task is.
func (e *env) barrier() {
	e.t.Helper()
	id := e.createService(replicated("probe-"+ids.New()[:8], 1))
	await.True(e.t, wait, func() bool { return len(e.tasks(id)) == 1 }, "probe task")
}
