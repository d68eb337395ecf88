package assign

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

const (
	cpu = int64(1e9) // one core in nano CPUs
	gib = int64(1 << 30)

	wait = 10 * time.Second
)

// clock is the fake time every test stamps with.
var clock = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func now() time.Time { return clock }

type nodeOpt func(*pb.Node)

// node builds a ready, active worker with 4 CPUs and 8 GiB.
func node(id string, opts ...nodeOpt) *pb.Node {
	n := &pb.Node{
		Id:     id,
		Spec:   &pb.NodeSpec{Annotations: &pb.Annotations{Labels: map[string]string{}}},
		Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY},
		Description: &pb.NodeDescription{
			Hostname:  "host-" + id,
			Platform:  &pb.Platform{Os: "linux", Architecture: "amd64"},
			Resources: &pb.ResourceSet{NanoCpus: 4 * cpu, MemoryBytes: 8 * gib},
		},
	}
	for _, o := range opts {
		o(n)
	}
	return n
}

func withLabel(k, v string) nodeOpt {
	return func(n *pb.Node) { n.Spec.Annotations.Labels[k] = v }
}

func withState(s pb.NodeStatus_State) nodeOpt { return func(n *pb.Node) { n.Status.State = s } }

func withAvail(a pb.NodeSpec_Availability) nodeOpt {
	return func(n *pb.Node) { n.Spec.Availability = a }
}

func withMemory(mem int64) nodeOpt {
	return func(n *pb.Node) { n.Description.Resources.MemoryBytes = mem }
}

type taskOpt func(*pb.Task)

// task builds a pending task of service svc in slot, desired running, with
// the addresses the allocator would have given it.
func task(svc string, slot uint64, opts ...taskOpt) *pb.Task {
	t := &pb.Task{
		Networks:     []*pb.NetworkAttachmentStatus{{NetworkId: "net", Addresses: []string{"10.0.0.2/24"}}},
		Id:           fmt.Sprintf("%s.%d", svc, slot),
		ServiceId:    svc,
		Slot:         slot,
		Spec:         &pb.TaskSpec{Placement: &pb.Placement{}, Resources: &pb.Resources{}},
		DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Status:       &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING, Message: "pending"},
	}
	for _, o := range opts {
		o(t)
	}
	return t
}

// tasks builds n pending tasks of svc in slots 1..n.
func tasks(svc string, n int, opts ...taskOpt) []*pb.Task {
	out := make([]*pb.Task, n)
	for i := range out {
		out[i] = task(svc, uint64(i+1), opts...)
	}
	return out
}

// runningOn makes the task one already running on a node.
func runningOn(nodeID string) taskOpt {
	return func(t *pb.Task) {
		t.NodeId = nodeID
		t.Status.State = pb.TaskState_TASK_STATE_RUNNING
	}
}

func pinnedTo(nodeID string) taskOpt { return func(t *pb.Task) { t.NodeId = nodeID } }

func reserveMemory(mem int64) taskOpt {
	return func(t *pb.Task) { t.Spec.Resources.Reservations = &pb.ResourceSet{MemoryBytes: mem} }
}

func constraints(cs ...string) taskOpt {
	return func(t *pb.Task) { t.Spec.Placement.Constraints = cs }
}

// newStore returns an in-memory store without Raft.
func newStore() *store.MemoryStore { return store.New(nil, store.WithClock(now)) }

// create writes nodes and tasks in one transaction.
func create(t testing.TB, s *store.MemoryStore, nodes []*pb.Node, tasks []*pb.Task) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		for _, n := range nodes {
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		for _, tk := range tasks {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
}

// updateNode changes a stored node.
func updateNode(t testing.TB, s *store.MemoryStore, id string, change func(*pb.Node)) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		n := proto.Clone(tx.GetNode(id)).(*pb.Node)
		change(n)
		return tx.UpdateNode(n)
	})
	if err != nil {
		t.Fatalf("update node %s: %v", id, err)
	}
}

// updateTask changes a stored task.
func updateTask(t testing.TB, s *store.MemoryStore, id string, change func(*pb.Task)) {
	t.Helper()
	err := s.Update(context.Background(), func(tx store.Tx) error {
		tk := proto.Clone(tx.GetTask(id)).(*pb.Task)
		change(tk)
		return tx.UpdateTask(tk)
	})
	if err != nil {
		t.Fatalf("update task %s: %v", id, err)
	}
}

func getTask(s *store.MemoryStore, id string) *pb.Task {
	var t *pb.Task
	s.View(func(tx store.ReadTx) { t = tx.GetTask(id) })
	return t
}

// start runs an Assigner on s until the test ends; a Run error fails it.
func start(t testing.TB, s *store.MemoryStore, cfg Config, setup ...func(*Assigner)) {
	t.Helper()
	cfg.Store = s
	if cfg.Now == nil {
		cfg.Now = now
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range setup {
		f(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitAssigned waits until every task in ids is assigned and returns them.
func waitAssigned(t testing.TB, s *store.MemoryStore, ids ...string) map[string]*pb.Task {
	t.Helper()
	got := map[string]*pb.Task{}
	await.True(t, wait, func() bool {
		for _, id := range ids {
			tk := getTask(s, id)
			if tk.GetStatus().GetState() != pb.TaskState_TASK_STATE_ASSIGNED {
				return false
			}
			got[id] = tk
		}
		return true
	}, "tasks %v not all assigned", ids)
	return got
}

// waitReason waits until task id is pending with reason in its status.
func waitReason(t testing.TB, s *store.MemoryStore, id, reason string) *pb.Task {
	t.Helper()
	var tk *pb.Task
	await.True(t, wait, func() bool {
		tk = getTask(s, id)
		st := tk.GetStatus()
		return st.GetState() == pb.TaskState_TASK_STATE_PENDING && st.GetErr() == reason && st.GetMessage() == reason
	}, "task %s: want pending with reason %q, have %v", id, reason, lazy(func() any { return tk.GetStatus() }))
	return tk
}

// lazy formats a value only when a failure message is built.
type lazy func() any

func (l lazy) String() string { return fmt.Sprint(l()) }

func ids(ts []*pb.Task) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.Id
	}
	return out
}

// perNode counts tasks by node.
func perNode(ts map[string]*pb.Task) map[string]int {
	m := map[string]int{}
	for _, t := range ts {
		m[t.NodeId]++
	}
	return m
}
