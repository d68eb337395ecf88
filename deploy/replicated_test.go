package deploy

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

func TestNewRejectsBadConfig(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Store") {
		t.Errorf("New without a store: %v, want an error naming Store", err)
	}
	_, err := New(Config{Store: store.New(nil), ReaperHistory: -1})
	if err == nil || !strings.Contains(err.Error(), "ReaperHistory") {
		t.Errorf("New with ReaperHistory -1: %v, want an error naming ReaperHistory", err)
	}
}

func TestReplicatedCreatesPendingTasks(t *testing.T) {
	e := newEnv(t, 0)
	spec := replicated("web", 3)
	svc := e.createService(spec)
	got := e.awaitSlots(svc, "1", "2", "3")
	for _, task := range got {
		if task.GetNodeId() != "" || task.GetStatus().GetState() != pb.TaskState_TASK_STATE_PENDING ||
			task.GetDesiredState() != running || task.GetSpecVersion() != 1 || task.GetServiceId() != svc {
			t.Errorf("new task %v: want pending, desired running, no node, spec version 1", task)
		}
		if !proto.Equal(task.GetSpec(), spec.GetTask()) {
			t.Errorf("task spec %v, want the service's %v", task.GetSpec(), spec.GetTask())
		}
	}
}

func TestScaleUpAndDown(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", nil)
	svc := e.createService(replicated("web", 5))
	for _, task := range e.awaitSlots(svc, "1", "2", "3", "4", "5") {
		e.runOn(task.GetId(), "n1")
	}

	e.changeService(svc, func(s *pb.ServiceSpec) { s.Replicas = proto.Int64(2) })
	kept := e.awaitSlots(svc, "1", "2")
	for _, task := range e.tasks(svc) {
		if task.GetSlot() > 2 && task.GetDesiredState() != shutdown {
			t.Errorf("slot %d after scaling to 2: desired %v, want shutdown", task.GetSlot(), task.GetDesiredState())
		}
		if task.GetSlot() <= 2 && task.GetStatus().GetState() != running {
			t.Errorf("slot %d after scaling to 2: %v, want the running task kept", task.GetSlot(), task.GetStatus().GetState())
		}
	}

	e.changeService(svc, func(s *pb.ServiceSpec) { s.Replicas = proto.Int64(4) })
	got := e.awaitSlots(svc, "1", "2", "3", "4")
	for _, slot := range []string{"1", "2"} {
		if got[slot].GetId() != kept[slot].GetId() {
			t.Errorf("slot %s was replaced on scale up", slot)
		}
	}
	for _, slot := range []string{"3", "4"} {
		if got[slot].GetStatus().GetState() != pb.TaskState_TASK_STATE_PENDING || got[slot].GetSpecVersion() != 3 {
			t.Errorf("slot %s after scale up: %v, want a new pending task of spec version 3", slot, got[slot])
		}
	}

	e.changeService(svc, func(s *pb.ServiceSpec) { s.Replicas = proto.Int64(0) })
	e.awaitSlots(svc)
}

func TestScaleDownDeletesTasksNeverPlaced(t *testing.T) {
	e := newEnv(t, 0)
	svc := e.createService(replicated("web", 3))
	e.awaitSlots(svc, "1", "2", "3")
	e.changeService(svc, func(s *pb.ServiceSpec) { s.Replicas = proto.Int64(1) })
	await.True(t, wait, func() bool { return len(e.tasks(svc)) == 1 }, "pending tasks of removed slots deleted")
}

func TestFinishedTaskUnderRestartPolicy(t *testing.T) {
	const (
		complete = pb.TaskState_TASK_STATE_COMPLETE
		failed   = pb.TaskState_TASK_STATE_FAILED
		rejected = pb.TaskState_TASK_STATE_REJECTED
	)
	for _, tc := range []struct {
		name    string
		cond    pb.RestartPolicy_Condition
		state   pb.TaskState
		restart bool
	}{
		{"any restarts a failed task", pb.RestartPolicy_CONDITION_ANY, failed, true},
		{"any restarts a completed task", pb.RestartPolicy_CONDITION_ANY, complete, true},
		{"on-failure restarts a failed task", pb.RestartPolicy_CONDITION_ON_FAILURE, failed, true},
		{"on-failure restarts a rejected task", pb.RestartPolicy_CONDITION_ON_FAILURE, rejected, true},
		{"on-failure keeps a completed task", pb.RestartPolicy_CONDITION_ON_FAILURE, complete, false},
		{"none keeps a completed task", pb.RestartPolicy_CONDITION_NONE, complete, false},
		{"none keeps a failed task", pb.RestartPolicy_CONDITION_NONE, failed, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 0)
			e.addNode("n1", nil)
			spec := replicated("web", 2)
			spec.Task.Restart.Condition = tc.cond
			svc := e.createService(spec)
			first := e.awaitSlots(svc, "1", "2")
			e.runOn(first["1"].GetId(), "n1")
			e.runOn(first["2"].GetId(), "n1")
			e.setStatus(first["1"].GetId(), tc.state, "")

			if !tc.restart {
				e.barrier()
				got := e.awaitSlots(svc, "1", "2")
				if got["1"].GetId() != first["1"].GetId() || got["1"].GetStatus().GetState() != tc.state {
					t.Fatalf("slot 1 holds %v, want the finished task left alone", got["1"])
				}
				if n := len(e.tasks(svc)); n != 2 {
					t.Fatalf("%d tasks, want no replacement", n)
				}
				return
			}
			await.True(t, wait, func() bool {
				got, err := e.slots(svc)
				return err == nil && got["1"] != nil && got["1"].GetId() != first["1"].GetId()
			}, "slot 1 replaced")
			old := findTask(e.tasks(svc), first["1"].GetId())
			if old.GetDesiredState() != shutdown {
				t.Errorf("replaced task desired %v, want shutdown", old.GetDesiredState())
			}
			if got := e.awaitSlots(svc, "1", "2"); got["2"].GetId() != first["2"].GetId() {
				t.Errorf("slot 2 was replaced too")
			}
		})
	}
}

func findTask(ts []*pb.Task, id string) *pb.Task {
	for _, t := range ts {
		if t.GetId() == id {
			return t
		}
	}
	return nil
}

func TestDrainedAndDownNodesReplaced(t *testing.T) {
	for _, tc := range []struct {
		name  string
		leave func(e *env, node string)
	}{
		{"drain", func(e *env, n string) { e.setAvailability(n, pb.NodeSpec_AVAILABILITY_DRAIN) }},
		{"down", func(e *env, n string) { e.setNodeState(n, pb.NodeStatus_STATE_DOWN) }},
		{"removed", func(e *env, n string) { e.update(func(tx store.Tx) error { return tx.DeleteNode(n) }) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 0)
			e.addNode("n1", nil)
			e.addNode("n2", nil)
			spec := replicated("web", 4)
			spec.Task.Restart.Condition = pb.RestartPolicy_CONDITION_NONE // node loss replaces anyway
			spec.Task.Restart.Delay = nil                                 // and at once, not after 5s
			svc := e.createService(spec)
			first := e.awaitSlots(svc, "1", "2", "3", "4")
			for slot, task := range first {
				node := "n2"
				if slot == "1" || slot == "2" {
					node = "n1"
				}
				e.runOn(task.GetId(), node)
			}
			tc.leave(e, "n1")
			await.True(t, wait, func() bool {
				got, err := e.slots(svc)
				return err == nil && len(got) == 4 && got["1"].GetId() != first["1"].GetId() && got["2"].GetId() != first["2"].GetId()
			}, "slots 1 and 2 replaced")
			got := e.awaitSlots(svc, "1", "2", "3", "4")
			for _, slot := range []string{"1", "2"} {
				if got[slot].GetNodeId() != "" || got[slot].GetStatus().GetState() != pb.TaskState_TASK_STATE_PENDING {
					t.Errorf("replacement in slot %s: %v, want pending for the scheduler", slot, got[slot])
				}
				if old := findTask(e.tasks(svc), first[slot].GetId()); old != nil && old.GetDesiredState() != shutdown {
					t.Errorf("task left on n1 desired %v, want shutdown", old.GetDesiredState())
				}
			}
			for _, slot := range []string{"3", "4"} {
				if got[slot].GetId() != first[slot].GetId() {
					t.Errorf("slot %s on n2 was replaced", slot)
				}
			}
		})
	}
}

func TestNodeBackStopsStaleTasks(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", nil)
	e.addNode("n2", nil)
	svc := e.createService(replicated("web", 2))
	first := e.awaitSlots(svc, "1", "2")
	e.runOn(first["1"].GetId(), "n1")
	e.runOn(first["2"].GetId(), "n1")

	e.setNodeState("n1", pb.NodeStatus_STATE_DOWN)
	await.True(t, wait, func() bool {
		got, err := e.slots(svc)
		return err == nil && len(got) == 2 && got["1"].GetId() != first["1"].GetId() && got["2"].GetId() != first["2"].GetId()
	}, "replacements for n1's tasks")
	for _, task := range e.live(svc) {
		e.runOn(task.GetId(), "n2")
	}

	// n1 returns still claiming its old tasks run: they stay desired
	// shutdown, and the agent's report of their stop lets the reaper in.
	e.setNodeState("n1", pb.NodeStatus_STATE_READY)
	e.barrier()
	got := e.awaitSlots(svc, "1", "2")
	for _, task := range got {
		if task.GetNodeId() != "n2" {
			t.Errorf("live task %s on %s after n1 came back, want n2", task.GetId(), task.GetNodeId())
		}
	}
	for _, id := range []string{first["1"].GetId(), first["2"].GetId()} {
		if task := findTask(e.tasks(svc), id); task.GetDesiredState() != shutdown {
			t.Errorf("stale task %s desired %v, want shutdown", id, task.GetDesiredState())
		}
		e.setStatus(id, shutdown, "")
	}
	e.barrier()
	if n := len(e.tasks(svc)); n != 4 {
		t.Errorf("%d tasks, want 2 running and 2 shut down kept as history", n)
	}
	e.awaitSlots(svc, "1", "2")
}

func TestServiceRemoval(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", nil)
	svc := e.createService(replicated("web", 3))
	first := e.awaitSlots(svc, "1", "2", "3")
	e.runOn(first["1"].GetId(), "n1")
	e.runOn(first["2"].GetId(), "n1")
	e.update(func(tx store.Tx) error { return tx.DeleteService(svc) })

	// The never-placed task goes at once; the running ones are told to stop.
	await.True(t, wait, func() bool {
		ts := e.tasks(svc)
		return len(ts) == 2 && ts[0].GetDesiredState() == shutdown && ts[1].GetDesiredState() == shutdown
	}, "running tasks told to stop, pending one deleted")
	e.setStatus(first["1"].GetId(), shutdown, "")
	await.True(t, wait, func() bool { return len(e.tasks(svc)) == 1 }, "stopped task deleted")
	e.setStatus(first["2"].GetId(), pb.TaskState_TASK_STATE_FAILED, "")
	await.True(t, wait, func() bool { return len(e.tasks(svc)) == 0 }, "every task deleted")
}

func TestStartReconcilesExistingState(t *testing.T) {
	clock := newFakeClock()
	st := store.New(nil, store.WithClock(clock.Now))
	ctx := context.Background()
	// Written while no leader ran: a service without tasks, and a removed
	// service's finished task.
	err := st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateService(&pb.Service{Id: "svc", Spec: replicated("web", 2), SpecVersion: 1}); err != nil {
			return err
		}
		return tx.CreateTask(&pb.Task{Id: "old", ServiceId: "gone", Slot: 1, NodeId: "n1", DesiredState: running,
			Status: &pb.TaskStatus{State: pb.TaskState_TASK_STATE_COMPLETE}})
	})
	if err != nil {
		t.Fatal(err)
	}
	e := start(t, st, clock, 0)
	e.awaitSlots("svc", "1", "2")
	await.True(t, wait, func() bool { return len(e.tasks("gone")) == 0 }, "removed service's task deleted")
}

func TestRunStopsWithContext(t *testing.T) {
	o, err := New(Config{Store: store.New(nil)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel: %v, want nil", err)
		}
	case <-time.After(wait):
		t.Fatal("Run did not return after its context ended")
	}
}
