package dispatcher

import (
	"context"
	"sync"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
	"berth/store"
)

func report(id string, s pb.TaskState) *pb.TaskStatusUpdate {
	return &pb.TaskStatusUpdate{TaskId: id, Status: &pb.TaskStatus{State: s, Message: s.String()}}
}

func TestUpdateTaskStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	h.update(func(tx store.Tx) error { return tx.CreateTask(task("t6", "n1", assignedState, running)) })
	a := h.session("n1")
	before := h.st.Index()
	_, err := h.client().UpdateTaskStatus(as(context.Background(), "n1"), &pb.UpdateTaskStatusRequest{
		SessionId: a.sid,
		Updates: []*pb.TaskStatusUpdate{
			report("t6", starting),
			report("t1", starting), // backwards from running: ignored
			report("t2", failed),   // n2's task: ignored
			report("nope", running),
			report("t4", shutdown),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := h.st.Index() - before; got != 1 {
		t.Errorf("the updates took %d store writes, want 1", got)
	}
	for id, want := range map[string]pb.TaskState{"t6": starting, "t1": running, "t2": running, "t4": shutdown} {
		if got := h.task(id).GetStatus().GetState(); got != want {
			t.Errorf("task %s is %s, want %s", id, got, want)
		}
	}
	_, err = h.client().UpdateTaskStatus(as(context.Background(), "n1"), &pb.UpdateTaskStatusRequest{
		SessionId: "stale", Updates: []*pb.TaskStatusUpdate{report("t6", running)},
	})
	if codeOf(err) != "FailedPrecondition" {
		t.Errorf("update with an unknown session: %v, want FailedPrecondition", err)
	}
	_, err = h.client().UpdateTaskStatus(as(context.Background(), "n2"), &pb.UpdateTaskStatusRequest{
		SessionId: a.sid, Updates: []*pb.TaskStatusUpdate{report("t2", running)},
	})
	if codeOf(err) != "FailedPrecondition" {
		t.Errorf("update with another node's session: %v, want FailedPrecondition", err)
	}
	_, err = h.client().UpdateTaskStatus(as(context.Background(), "n1"), &pb.UpdateTaskStatusRequest{
		SessionId: a.sid, Updates: []*pb.TaskStatusUpdate{{TaskId: "t6"}},
	})
	if codeOf(err) != "InvalidArgument" {
		t.Errorf("update without a status: %v, want InvalidArgument", err)
	}
	if got := h.task("t6").GetStatus().GetState(); got != starting {
		t.Errorf("t6 is %s after refused updates, want starting", got)
	}
}

func TestUpdateTaskStatusCoalescesAgents(t *testing.T) {
	t.Parallel()
	// A wide window so that calls of concurrent agents surely meet in one.
	h := newHarness(t, func(c *Config) { c.BatchWindow = 400 * time.Millisecond })
	nodes := []string{"n1", "n2", "n3", "n4"}
	h.update(func(tx store.Tx) error {
		for _, n := range nodes {
			if err := tx.CreateTask(task("t-"+n, n, assignedState, running)); err != nil {
				return err
			}
		}
		return nil
	})
	sids := map[string]string{}
	for _, n := range nodes {
		sids[n] = h.session(n).sid
	}
	before := h.st.Index()
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes))
	for _, n := range nodes {
		wg.Go(func() {
			_, err := h.client().UpdateTaskStatus(as(context.Background(), n), &pb.UpdateTaskStatusRequest{
				SessionId: sids[n], Updates: []*pb.TaskStatusUpdate{report("t-"+n, running)},
			})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := h.st.Index() - before; got != 1 {
		t.Errorf("%d agents' reports took %d store writes, want 1", len(nodes), got)
	}
	for _, n := range nodes {
		if got := h.task("t-" + n).GetStatus().GetState(); got != running {
			t.Errorf("task of %s is %s, want running", n, got)
		}
	}
}
