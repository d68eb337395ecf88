package assign

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "berth/proto/berth/v1"
	"berth/scheduler"
	"berth/store"
)

// assignedMessage is the status message of a task the loop assigned.
const assignedMessage = "assigned"

// outcome counts what one commit did.
type outcome struct {
	assigned int // tasks written as assigned
	bounced  int // assignments the write-time check refused: still pending
	stale    int // decisions about tasks no longer pending in the store
	reasons  int // pending tasks whose reason was written
	// written are the tasks written as assigned, for the loop's copy.
	written []*pb.Task
}

// committer writes one round's decisions; it lives for one store batch.
type committer struct {
	now   *timestamppb.Timestamp
	nodes map[string]*scheduler.NodeState // nil value: the node is gone
	out   outcome
}

// commit writes res in one store batch (entries of bounded size). Each
// decision is checked again against the store inside the write.
func (a *Assigner) commit(ctx context.Context, res scheduler.Result) (outcome, error) {
	c := &committer{now: timestamppb.New(a.now()), nodes: map[string]*scheduler.NodeState{}}
	err := a.store.Batch(ctx, func(b *store.Batch) error {
		for _, as := range res.Assignments {
			if err := b.Update(func(tx store.Tx) error { return c.assign(tx, as) }); err != nil {
				return err
			}
		}
		for _, u := range res.Unplaced {
			if err := b.Update(func(tx store.Tx) error { return c.explain(tx, u) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return outcome{}, err
	}
	return c.out, nil
}

// assign writes one assignment if the task still waits and the node still
// takes it next to the tasks it holds now.
func (c *committer) assign(tx store.Tx, as scheduler.Assignment) error {
	cur := tx.GetTask(as.TaskID)
	if cur == nil || !isPending(cur) || (cur.GetNodeId() != "" && cur.GetNodeId() != as.NodeID) {
		c.out.stale++
		return nil
	}
	ns, err := c.node(tx, as.NodeID)
	if err != nil {
		return err
	}
	if ns == nil || ns.Fits(cur) != nil {
		c.out.bounced++
		return nil
	}
	t := proto.Clone(cur).(*pb.Task)
	t.NodeId = as.NodeID
	t.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_ASSIGNED, Timestamp: c.now, Message: assignedMessage}
	if err := tx.UpdateTask(t); err != nil {
		return fmt.Errorf("assign task %s to node %s: %w", t.GetId(), as.NodeID, err)
	}
	ns.Add(t)
	c.out.assigned++
	c.out.written = append(c.out.written, t)
	return nil
}

// node returns the state of a node as the write sees it, built on first use
// and kept up to date with the tasks this batch assigns; nil when the node
// is gone.
func (c *committer) node(tx store.ReadTx, id string) (*scheduler.NodeState, error) {
	if ns, ok := c.nodes[id]; ok {
		return ns, nil
	}
	n := tx.GetNode(id)
	if n == nil {
		c.nodes[id] = nil
		return nil, nil
	}
	tasks, err := tx.FindTasks(store.ByNodeID(id))
	if err != nil {
		return nil, fmt.Errorf("read tasks of node %s: %w", id, err)
	}
	live := tasks[:0] // FindTasks returns a fresh slice
	for _, t := range tasks {
		if holds(t) {
			live = append(live, t)
		}
	}
	ns := scheduler.NewNodeState(n, live)
	c.nodes[id] = ns
	return ns, nil
}

// explain records why a task stays pending, unless it says so already.
func (c *committer) explain(tx store.Tx, u scheduler.Unplaced) error {
	cur := tx.GetTask(u.TaskID)
	if cur == nil || !isPending(cur) {
		c.out.stale++
		return nil
	}
	if st := cur.GetStatus(); st.GetErr() == u.Reason && st.GetMessage() == u.Reason {
		return nil
	}
	t := proto.Clone(cur).(*pb.Task)
	if t.Status == nil {
		t.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING, Timestamp: c.now}
	}
	// The timestamp stays: it says since when the task is pending.
	t.Status.Message, t.Status.Err = u.Reason, u.Reason
	if err := tx.UpdateTask(t); err != nil {
		return fmt.Errorf("record why task %s is pending: %w", t.GetId(), err)
	}
	c.out.reasons++
	return nil
}

// retryable reports whether a failed commit only lost a race with another
// writer (or its fate is unknown), so a later round from fresher state may
// succeed; anything else (lost leadership, a bug) ends Run.
func retryable(err error) bool {
	return errors.Is(err, store.ErrSequenceConflict) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, store.ErrExist) || errors.Is(err, store.ErrOutcomeUnknown)
}
