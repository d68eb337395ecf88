package assign

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// TestStateCallsRoundsOnlyForChangesThatMatter checks which store events
// make the loop place again: new work, nodes changing what placement reads,
// tasks freeing their node; and not the writes that follow from placing
// (reasons, assignments) or node heartbeats.
func TestStateCallsRoundsOnlyForChangesThatMatter(t *testing.T) {
	t.Parallel()
	running := task("db", 1, runningOn("a"), reserveMemory(gib))
	pending := task("web", 1)
	st := newState()
	for _, ev := range []store.Event{
		{Kind: store.EventCreate, Object: node("a")},
		{Kind: store.EventCreate, Object: running},
		{Kind: store.EventCreate, Object: pending},
	} {
		st.apply(ev)
	}

	change := func(o proto.Message, f func(proto.Message)) proto.Message {
		c := proto.Clone(o)
		f(c)
		return c
	}
	nodeChange := func(f func(*pb.Node)) proto.Message {
		return change(st.nodes["a"], func(m proto.Message) { f(m.(*pb.Node)) })
	}
	taskChange := func(tk *pb.Task, f func(*pb.Task)) proto.Message {
		return change(tk, func(m proto.Message) { f(m.(*pb.Task)) })
	}
	for _, tc := range []struct {
		name string
		ev   store.Event
		want bool
	}{
		{"new pending task", store.Event{Kind: store.EventCreate, Object: task("web", 2)}, true},
		{"reason written on a pending task", store.Event{Kind: store.EventUpdate, Object: taskChange(pending, func(tk *pb.Task) {
			tk.Status.Err = "no suitable node (node not ready on 1 node)"
		})}, false},
		{"pending task's placement changed", store.Event{Kind: store.EventUpdate, Object: taskChange(pending, func(tk *pb.Task) {
			tk.Spec.Placement.Constraints = []string{"node.role==worker"}
		})}, true},
		{"task assigned", store.Event{Kind: store.EventUpdate, Object: taskChange(pending, func(tk *pb.Task) {
			tk.NodeId, tk.Status.State = "a", pb.TaskState_TASK_STATE_ASSIGNED
		})}, false},
		{"running task reports health", store.Event{Kind: store.EventUpdate, Object: taskChange(running, func(tk *pb.Task) {
			tk.Status.Message = "healthy"
		})}, false},
		{"running task told to shut down", store.Event{Kind: store.EventUpdate, Object: taskChange(running, func(tk *pb.Task) {
			tk.DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN
		})}, false}, // it holds its node until it has stopped
		{"task told to shut down stopped", store.Event{Kind: store.EventUpdate, Object: taskChange(running, func(tk *pb.Task) {
			tk.DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN
			tk.Status.State = pb.TaskState_TASK_STATE_SHUTDOWN
		})}, true},
		{"running task failed", store.Event{Kind: store.EventUpdate, Object: taskChange(running, func(tk *pb.Task) {
			tk.Status.State = pb.TaskState_TASK_STATE_FAILED
		})}, true},
		{"running task deleted", store.Event{Kind: store.EventDelete, Object: running}, true},
		{"finished task deleted", store.Event{Kind: store.EventDelete, Object: task("old", 1, func(tk *pb.Task) {
			tk.Status.State = pb.TaskState_TASK_STATE_COMPLETE
		})}, false},
		{"node heartbeat", store.Event{Kind: store.EventUpdate, Object: nodeChange(func(n *pb.Node) {
			n.Status.Message = "heartbeat"
		})}, false},
		{"node down", store.Event{Kind: store.EventUpdate, Object: nodeChange(func(n *pb.Node) {
			n.Status.State = pb.NodeStatus_STATE_DOWN
		})}, true},
		{"node drained", store.Event{Kind: store.EventUpdate, Object: nodeChange(func(n *pb.Node) {
			n.Spec.Availability = pb.NodeSpec_AVAILABILITY_DRAIN
		})}, true},
		{"node label", store.Event{Kind: store.EventUpdate, Object: nodeChange(func(n *pb.Node) {
			n.Spec.Annotations.Labels = map[string]string{"zone": "b"}
		})}, true},
		{"node resources", store.Event{Kind: store.EventUpdate, Object: nodeChange(func(n *pb.Node) {
			n.Description.Resources.MemoryBytes = gib
		})}, true},
		{"node joins", store.Event{Kind: store.EventCreate, Object: node("b")}, true},
		{"node removed", store.Event{Kind: store.EventDelete, Object: node("a")}, true},
	} {
		// Each case starts from the same state.
		s := newState()
		for id, n := range st.nodes {
			s.nodes[id] = n
		}
		s.putTask(running)
		s.putTask(pending)
		if got := s.apply(tc.ev); got != tc.want {
			t.Errorf("%s: calls a round = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestStateIgnoresEventsOlderThanItsOwnWrite: after the loop files a task
// it assigned, an event from before that write still on its way must not
// make the task pending again (and free its reservation).
func TestStateIgnoresEventsOlderThanItsOwnWrite(t *testing.T) {
	t.Parallel()
	pending := task("web", 1)
	st := newState()
	st.putTask(pending)

	assigned := proto.Clone(pending).(*pb.Task)
	assigned.NodeId, assigned.Status.State = "a", pb.TaskState_TASK_STATE_ASSIGNED
	st.putTask(assigned)

	older := proto.Clone(pending).(*pb.Task)
	older.Status.Err = "no suitable node (node not ready on 1 node)"
	if st.apply(store.Event{Kind: store.EventUpdate, Object: older}) {
		t.Error("an event older than the loop's own write called a round")
	}
	if _, ok := st.pending["web.1"]; ok {
		t.Fatal("an event older than the loop's own write made the task pending again")
	}
	if st.live["web.1"] != assigned {
		t.Fatal("the assigned task no longer holds its node")
	}

	shutdown := proto.Clone(assigned).(*pb.Task)
	shutdown.DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN
	shutdown.Status.State = pb.TaskState_TASK_STATE_SHUTDOWN
	if !st.apply(store.Event{Kind: store.EventUpdate, Object: shutdown}) || len(st.live) != 0 {
		t.Error("a later event did not free the task's node")
	}
}
