package deploy

import (
	"testing"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

func TestGlobalFollowsNodes(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", nil)
	e.addNode("n2", nil)
	svc := e.createService(global("agent"))
	got := e.awaitSlots(svc, "n1", "n2")
	for node, task := range got {
		if task.GetNodeId() != node || task.GetSlot() != 0 || task.GetStatus().GetState() != pb.TaskState_TASK_STATE_PENDING {
			t.Errorf("global task %v: want pending, slot 0, pinned to %s", task, node)
		}
		e.runOn(task.GetId(), "")
	}

	e.addNode("n3", nil)
	e.awaitSlots(svc, "n1", "n2", "n3")

	// Pause keeps what runs and starts nothing new.
	e.setAvailability("n3", pb.NodeSpec_AVAILABILITY_PAUSE)
	e.update(func(tx store.Tx) error { // joins paused
		return tx.CreateNode(&pb.Node{Id: "n4", Spec: &pb.NodeSpec{Availability: pb.NodeSpec_AVAILABILITY_PAUSE},
			Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}})
	})
	e.barrier()
	e.awaitSlots(svc, "n1", "n2", "n3")

	e.setAvailability("n1", pb.NodeSpec_AVAILABILITY_DRAIN)
	e.awaitSlots(svc, "n2", "n3")
	e.setAvailability("n1", pb.NodeSpec_AVAILABILITY_ACTIVE)
	e.setAvailability("n4", pb.NodeSpec_AVAILABILITY_ACTIVE)
	after := e.awaitSlots(svc, "n1", "n2", "n3", "n4")
	if after["n1"].GetId() == got["n1"].GetId() {
		t.Errorf("n1 back from drain reuses its shut down task")
	}

	e.setNodeState("n2", pb.NodeStatus_STATE_DOWN)
	e.awaitSlots(svc, "n1", "n3", "n4")
	e.setNodeState("n2", pb.NodeStatus_STATE_READY)
	e.awaitSlots(svc, "n1", "n2", "n3", "n4")

	e.update(func(tx store.Tx) error { return tx.DeleteNode("n3") })
	e.awaitSlots(svc, "n1", "n2", "n4")
	await.True(t, wait, func() bool {
		for _, task := range e.tasks(svc) {
			if task.GetNodeId() == "n3" {
				return false
			}
		}
		return true
	}, "tasks of the removed node deleted")
}

func TestGlobalConstraintsAndLabels(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", map[string]string{"zone": "a"})
	e.addNode("n2", map[string]string{"zone": "b"})
	e.addNode("n3", nil)
	svc := e.createService(global("agent", "node.labels.zone==a"))
	e.awaitSlots(svc, "n1")

	e.changeNode("n2", func(n *pb.Node) { n.Spec.Annotations.Labels["zone"] = "a" })
	e.awaitSlots(svc, "n1", "n2")
	e.changeNode("n1", func(n *pb.Node) { n.Spec.Annotations.Labels["zone"] = "c" })
	e.awaitSlots(svc, "n2")
	e.addNode("n4", map[string]string{"zone": "A"}) // values compare without case, as Docker's
	e.awaitSlots(svc, "n2", "n4")

	e.changeService(svc, func(s *pb.ServiceSpec) { s.Task.Placement.Constraints = []string{"node.labels.zone!=a"} })
	e.awaitSlots(svc, "n1", "n3")
}

func TestGlobalRestartsOnItsNode(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", nil)
	spec := global("agent")
	spec.Task.Restart = &pb.RestartPolicy{Condition: pb.RestartPolicy_CONDITION_ON_FAILURE}
	svc := e.createService(spec)
	first := e.awaitSlots(svc, "n1")["n1"]
	e.runOn(first.GetId(), "")
	e.clock.Advance(StableRun)
	e.setStatus(first.GetId(), pb.TaskState_TASK_STATE_FAILED, "")
	await.True(t, wait, func() bool {
		got, err := e.slots(svc)
		return err == nil && got["n1"] != nil && got["n1"].GetId() != first.GetId()
	}, "failed global task replaced at once after a stable run")

	second := e.awaitSlots(svc, "n1")["n1"]
	e.runOn(second.GetId(), "")
	e.setStatus(second.GetId(), pb.TaskState_TASK_STATE_COMPLETE, "")
	e.barrier()
	if got := e.awaitSlots(svc, "n1")["n1"]; got.GetId() != second.GetId() {
		t.Errorf("on-failure replaced a completed global task")
	}
}
