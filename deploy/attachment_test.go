package deploy

import (
	"testing"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// attachment is a standalone container's network attachment on node, as
// the dispatcher and the allocator leave it: of no service, assigned.
func attachment(id, node string, state pb.TaskState) *pb.Task {
	return &pb.Task{Id: id, NodeId: node, DesiredState: running,
		Spec: &pb.TaskSpec{Attachment: &pb.NetworkAttachmentSpec{ContainerId: id,
			Networks: []*pb.NetworkAttachment{{Target: "net"}}}},
		Networks: []*pb.NetworkAttachmentStatus{{NetworkId: "net", Addresses: []string{"10.0.0.2/24"}}},
		Status:   &pb.TaskStatus{State: state}}
}

func (e *env) task(id string) (t *pb.Task) {
	e.st.View(func(tx store.ReadTx) { t = tx.GetTask(id) })
	return t
}

// The orchestrator leaves live attachments alone (no service wants them,
// and none replaces them), deletes those that ended and those of a
// removed node; a down or drained node keeps them.
func TestOrchestratorAndAttachments(t *testing.T) {
	e := newEnv(t, 5)
	for _, n := range []string{"n1", "n2", "n3"} {
		e.addNode(n, nil)
	}
	pending := attachment("waiting", "n1", pb.TaskState_TASK_STATE_PENDING)
	pending.Networks = nil
	e.update(func(tx store.Tx) error {
		for _, tk := range []*pb.Task{pending, attachment("wired", "n1", running), attachment("ended", "n1", running),
			attachment("down", "n2", running), attachment("gone", "n3", running)} {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	e.setAvailability("n1", pb.NodeSpec_AVAILABILITY_DRAIN)
	e.setStatus("ended", pb.TaskState_TASK_STATE_COMPLETE, "")
	e.setNodeState("n2", pb.NodeStatus_STATE_DOWN)
	e.update(func(tx store.Tx) error { return tx.DeleteNode("n3") })

	await.True(t, wait, func() bool { return e.task("ended") == nil }, "the ended attachment is not deleted")
	await.True(t, wait, func() bool { return e.task("gone") == nil }, "the removed node's attachment is not deleted")
	e.barrier()
	for _, id := range []string{"waiting", "wired", "down"} {
		if tk := e.task(id); tk == nil || tk.GetDesiredState() != running {
			t.Errorf("attachment %s: %v; want it left alone, desired running", id, tk)
		}
	}
	var n int
	e.st.View(func(tx store.ReadTx) { ts, _ := tx.FindTasks(store.ByServiceID("")); n = len(ts) })
	if n != 3 {
		t.Errorf("%d tasks of no service; want the 3 attachments left (no replacement made)", n)
	}
	// Once the down node's agent reports it ended, it goes.
	e.setNodeState("n2", pb.NodeStatus_STATE_READY)
	e.setStatus("down", pb.TaskState_TASK_STATE_COMPLETE, "")
	await.True(t, wait, func() bool { return e.task("down") == nil }, "the stopped attachment is not deleted")
}
