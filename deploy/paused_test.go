package deploy

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// TestPausedGlobalNodeCatchesUp follows Swarm's global orchestrator: a
// paused node takes no part in an update, so its task keeps the old spec
// and the update completes without it; once the node is active again its
// task is replaced at once, outside any rolling update (the update status
// stays completed).
func TestPausedGlobalNodeCatchesUp(t *testing.T) {
	e := newEnv(t, 5)
	e.addNode("n1", nil)
	e.addNode("n2", nil)
	spec := global("agent")
	// A delay the catch-up must not wait for.
	spec.Update = &pb.UpdateConfig{Parallelism: 1, Delay: durationpb.New(time.Hour), Monitor: durationpb.New(0)}
	id := e.createService(spec)
	for node, task := range e.awaitSlots(id, "n1", "n2") {
		e.runOn(task.GetId(), node)
	}
	e.runUpdater()
	e.setAvailability("n2", pb.NodeSpec_AVAILABILITY_PAUSE)
	e.startUpdate(id, "busybox:v2")

	image := func(node string) string {
		got, err := e.slots(id)
		if err != nil || got[node] == nil {
			return ""
		}
		return got[node].GetSpec().GetContainer().GetImage()
	}
	await.True(t, wait, func() bool { return image("n1") == "busybox:v2" }, "n1 updated")
	e.runOn(e.awaitSlots(id, "n1", "n2")["n1"].GetId(), "n1")
	status := func() *pb.UpdateStatus {
		var st *pb.UpdateStatus
		e.st.View(func(tx store.ReadTx) { st = tx.GetService(id).GetUpdateStatus() })
		return st
	}
	e.advanceWhenWaited(time.Hour) // the delay after n1's new task came up
	await.True(t, wait, func() bool { return status().GetState() == stCompleted }, "update completed without the paused node")
	e.barrier()
	if img := image("n2"); img != "busybox" {
		t.Fatalf("paused n2 runs %q during the update, want the old busybox", img)
	}
	done := status()

	e.setAvailability("n2", pb.NodeSpec_AVAILABILITY_ACTIVE)
	await.True(t, wait, func() bool { return image("n2") == "busybox:v2" }, "n2 brought up to date once active, without waiting the update delay")
	if st := status(); st.GetState() != stCompleted || !st.GetStartedAt().AsTime().Equal(done.GetStartedAt().AsTime()) {
		t.Errorf("status after the catch-up %v, want the finished update's %v", st, done)
	}
	n := 0
	for _, task := range e.tasks(id) {
		if task.GetNodeId() == "n2" && task.GetSpec().GetContainer().GetImage() == "busybox:v2" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("n2 got %d v2 tasks, want 1", n)
	}
}
