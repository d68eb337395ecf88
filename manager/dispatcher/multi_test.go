package dispatcher

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// TestSessionSendsEveryTaskOfOneBatch: the scheduler assigns many tasks
// to a node in one write; the agent must hear of all of them.
func TestSessionSendsEveryTaskOfOneBatch(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	h.update(func(tx store.Tx) error { return tx.CreateNode(workerNode("n1")) })
	a := h.session("n1")
	const pending, assigned, running = pb.TaskState_TASK_STATE_PENDING, pb.TaskState_TASK_STATE_ASSIGNED, pb.TaskState_TASK_STATE_RUNNING
	h.update(func(tx store.Tx) error {
		for _, id := range []string{"a", "b", "c"} {
			if err := tx.CreateTask(task(id, "", pending, running)); err != nil {
				return err
			}
		}
		return nil
	})
	h.update(func(tx store.Tx) error {
		for _, id := range []string{"a", "b", "c"} {
			tk := proto.Clone(tx.GetTask(id)).(*pb.Task)
			tk.NodeId, tk.Status.State = "n1", assigned
			if err := tx.UpdateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	var got []string
	for len(got) < 3 {
		got = append(got, describe(a.next())...)
	}
	slices.Sort(got)
	if want := []string{"task:a", "task:b", "task:c"}; !slices.Equal(got, want) {
		t.Fatalf("agent heard %v, want %v", got, want)
	}
}
