package deploy

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// errReplan means a unit changed between its plan and its write in a way
// the plan did not allow for: plan it again from a fresh view.
var errReplan = errors.New("unit changed since it was planned")

// unitError is a unit's write refused inside the batch; other units go on.
type unitError struct{ err error }

func (e unitError) Error() string { return e.err.Error() }
func (e unitError) Unwrap() error { return e.err }

// apply writes plans in one store batch, each unit atomically. It returns
// the units to plan again at once (errReplan), those to retry after a
// backoff (other refusals), and the error that stopped the batch, if any.
func (o *Orchestrator) apply(ctx context.Context, plans []plan) (replan, hold []unit, err error) {
	var created, stopped, removed int
	err = o.st.Batch(ctx, func(b *store.Batch) error {
		for _, p := range plans {
			var c, s, r int
			err := b.Update(func(tx store.Tx) error {
				var err error
				c, s, r, err = writePlan(tx, p)
				if err != nil {
					return unitError{err}
				}
				return nil
			})
			var ue unitError
			switch {
			case err == nil:
				created, stopped, removed = created+c, stopped+s, removed+r
			case errors.Is(err, errReplan):
				o.log.Debug("unit changed; planning again", "service", p.u.service, "slot", p.u.slot, "node", p.u.node, "err", err)
				replan = append(replan, p.u)
			case errors.As(err, &ue):
				o.log.Warn("unit write refused", "service", p.u.service, "slot", p.u.slot, "node", p.u.node, "err", err)
				hold = append(hold, p.u)
			default:
				return err // the batch failed to flush: nothing more goes out
			}
		}
		return nil
	})
	o.log.Debug("orchestrator round written", "units", len(plans), "created", created, "stopped", stopped, "removed", removed, "err", err)
	return replan, hold, err
}

// writePlan writes one unit's plan, re-reading every task it touches: task
// states only move forward, so a stop or a delete decided on an older read
// still holds, while a create is made only if the unit is still empty.
func writePlan(tx store.Tx, p plan) (created, stopped, removed int, err error) {
	for _, t := range p.remove {
		cur := tx.GetTask(t.GetId())
		if cur == nil {
			continue
		}
		if !neverAssigned(cur) && !off(cur, tx.GetNode) {
			// Assigned since: stop it instead; the reaper comes back later.
			p.stop = append(p.stop, cur)
			continue
		}
		if err := tx.DeleteTask(cur.GetId()); err != nil {
			return 0, 0, 0, fmt.Errorf("delete task %s: %w", cur.GetId(), err)
		}
		removed++
	}
	for _, t := range p.stop {
		ok, err := stopTask(tx, t.GetId())
		if err != nil {
			return 0, 0, 0, err
		}
		if ok {
			stopped++
		}
	}
	if p.create != nil {
		if err := checkEmpty(tx, p); err != nil {
			return 0, 0, 0, err
		}
		if err := tx.CreateTask(p.create); err != nil {
			return 0, 0, 0, fmt.Errorf("create task %s: %w", p.create.GetId(), err)
		}
		created++
	}
	return created, stopped, removed, nil
}

// stopTask sets a task's desired state to shutdown, unless it is there.
func stopTask(tx store.Tx, id string) (bool, error) {
	cur := tx.GetTask(id)
	if cur == nil || cur.GetDesiredState() >= shutdown {
		return false, nil
	}
	t := proto.Clone(cur).(*pb.Task)
	t.DesiredState = shutdown
	if err := tx.UpdateTask(t); err != nil {
		return false, fmt.Errorf("stop task %s: %w", id, err)
	}
	return true, nil
}

// checkEmpty is the plan applier's check before a create: the service still
// has the spec the task copies, and no live task took the unit since.
func checkEmpty(tx store.Tx, p plan) error {
	s := tx.GetService(p.u.service)
	if s == nil || s.GetSpecVersion() != p.create.GetSpecVersion() {
		return fmt.Errorf("service %s changed: %w", p.u.service, errReplan)
	}
	by := store.BySlot(p.u.service, p.u.slot)
	if p.u.slot == 0 {
		by = store.ByServiceNode(p.u.service, p.u.node)
	}
	tasks, err := tx.FindTasks(by)
	if err != nil {
		return err
	}
	for _, t := range tasks {
		if t.GetDesiredState() <= running {
			return fmt.Errorf("task %s holds the unit: %w", t.GetId(), errReplan)
		}
	}
	return nil
}
