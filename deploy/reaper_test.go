package deploy

import (
	"testing"
	"time"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// failRepeatedly fails slot 1's task n times, each after a second's run.
func (e *env) failRepeatedly(svc string, n int) {
	e.t.Helper()
	var last string
	for i := 0; i < n; i++ {
		await.True(e.t, wait, func() bool {
			got, err := e.slots(svc)
			if err != nil || got["1"] == nil || got["1"].GetId() == last {
				return false
			}
			last = got["1"].GetId()
			return true
		}, "attempt %d started", i+1)
		e.runOn(last, "n1")
		e.clock.Advance(time.Second)
		e.setStatus(last, pb.TaskState_TASK_STATE_FAILED, "")
	}
}

func TestReaperBoundsHistory(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history int
		cluster int64
		want    int
	}{
		{"default", 0, 0, DefaultReaperHistory},
		{"config", 2, 0, 2},
		{"cluster spec wins", 2, 3, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.history)
			if tc.cluster > 0 {
				e.update(func(tx store.Tx) error {
					return tx.CreateCluster(&pb.Cluster{Id: "c", Spec: &pb.ClusterSpec{TaskHistoryLimit: tc.cluster}})
				})
			}
			e.addNode("n1", nil)
			svc := e.createService(replicated("web", 1))
			e.failRepeatedly(svc, 12)
			e.awaitSlots(svc, "1")
			await.True(t, wait, func() bool { return len(e.tasks(svc)) == tc.want+1 },
				"history of %d tasks and the live one (have %d)", tc.want, len(e.tasks(svc)))
			// The newest are kept.
			var oldestKept time.Time
			for _, task := range e.tasks(svc) {
				if task.GetDesiredState() > running && (oldestKept.IsZero() || task.GetMeta().GetCreatedAt().AsTime().Before(oldestKept)) {
					oldestKept = task.GetMeta().GetCreatedAt().AsTime()
				}
			}
			if min := e.clock.Now().Add(-time.Duration(tc.want+1) * time.Second); oldestKept.Before(min) {
				t.Errorf("oldest kept task created %v, want the newest %d (after %v)", oldestKept, tc.want, min)
			}
		})
	}
}

func TestReaperKeepsTasksOnDownNodes(t *testing.T) {
	e := newEnv(t, 1)
	e.addNode("n1", nil)
	e.addNode("n2", nil)
	svc := e.createService(replicated("web", 1))
	first := e.awaitSlots(svc, "1")["1"]
	e.runOn(first.GetId(), "n1")
	e.setNodeState("n1", pb.NodeStatus_STATE_DOWN)
	e.failRepeatedlyOn(svc, "n2", first.GetId(), 3)
	e.barrier()
	// History 1 holds one finished task; the task still running on n1, down,
	// is not finished and stays until n1 reports it stopped.
	if findTask(e.tasks(svc), first.GetId()) == nil {
		t.Fatalf("task on the down node was reaped while its node may still run it")
	}
	if n := len(e.tasks(svc)); n != 3 {
		t.Errorf("%d tasks, want the live one, one finished and the one on n1", n)
	}
	e.setNodeState("n1", pb.NodeStatus_STATE_READY)
	e.setStatus(first.GetId(), shutdown, "")
	await.True(t, wait, func() bool { return findTask(e.tasks(svc), first.GetId()) == nil }, "stopped task reaped")
}

// failRepeatedlyOn fails n successive replacements of task after on node.
func (e *env) failRepeatedlyOn(svc, node, after string, n int) {
	e.t.Helper()
	last := after
	for i := 0; i < n; i++ {
		await.True(e.t, wait, func() bool {
			got, err := e.slots(svc)
			if err != nil || got["1"] == nil || got["1"].GetId() == last {
				return false
			}
			last = got["1"].GetId()
			return true
		}, "replacement %d started", i+1)
		e.runOn(last, node)
		e.clock.Advance(time.Second)
		e.setStatus(last, pb.TaskState_TASK_STATE_FAILED, "")
	}
	await.True(e.t, wait, func() bool {
		got, err := e.slots(svc)
		return err == nil && got["1"] != nil && got["1"].GetId() != last
	}, "last replacement started")
}
