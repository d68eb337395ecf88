package agent

import (
	"context"

	pb "berth/proto/berth/v1"
)

// assign takes a session message's attachment tasks (tasks: those set,
// removed: the IDs of tasks it removes, attachments or not). The
// reconciler calls it after overlay and DNS applied the message, so the
// networks of the tasks are built. It registers adopted containers with
// the overlay once their task is known (their VIP tables are kept
// current from then on), ends the attachments of containers whose task
// the managers dropped, and ends attachments assigned here that no
// container has (the daemon lost it).
func (a *attachments) assign(ctx context.Context, full bool, tasks []*pb.Task, removed []string) {
	a.mu.Lock()
	if full {
		clear(a.tasks)
	}
	for _, t := range tasks {
		a.tasks[t.GetId()] = t
	}
	for _, id := range removed {
		if _, ok := a.tasks[id]; ok {
			delete(a.tasks, id)
			a.forget(id)
		}
		delete(a.ending, id)
	}
	for id := range a.ending {
		if _, ok := a.tasks[id]; full && !ok {
			delete(a.ending, id)
		}
	}
	close(a.changed)
	a.changed = make(chan struct{})
	register, lost, orphans := a.sortLocked()
	a.mu.Unlock()
	for _, r := range register {
		a.register(ctx, r)
	}
	for _, r := range lost {
		a.log.Warn("the managers ended a container's attachment; it is off its networks", "container", r.ContainerID, "attachment", r.TaskID)
		r.stop()
	}
	for _, t := range orphans {
		a.spawn(func(ctx context.Context) { a.endOrphan(ctx, t) })
	}
}

// sortLocked sorts the records and tasks after an assignment: adopted
// records to register; watched ones whose task is gone or to stop (the
// managers ended it: a node down too long, say); tasks of no record.
func (a *attachments) sortLocked() (register, lost []*attachRecord, orphans []*pb.Task) {
	byTask := map[string]*attachRecord{}
	for _, r := range a.recs {
		byTask[r.TaskID] = r
		t, ok := a.tasks[r.TaskID]
		if r.watched && !r.lost && ((!ok && r.seen) || (ok && t.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING)) {
			r.lost = true
			lost = append(lost, r)
			continue
		}
		if ok && !r.Ended {
			r.task, r.seen = t, true
			if r.adopted && !r.registered && sameProc(r.Pid, r.Start) {
				r.registered = true
				register = append(register, r)
			}
		}
	}
	for id, t := range a.tasks {
		cid := t.GetSpec().GetAttachment().GetContainerId()
		if byTask[id] == nil && !a.pending[cid] && !a.ending[id] {
			a.ending[id] = true
			orphans = append(orphans, t)
		}
	}
	return register, lost, orphans
}

// register gives an adopted container back to the overlay: its
// interfaces are there; its VIP table is written from this daemon's view.
func (a *attachments) register(ctx context.Context, r *attachRecord) {
	if a.net == nil {
		return
	}
	if _, err := a.net.Attach(ctx, r.Pid, r.task); err != nil {
		a.log.Warn("adopt a container's attachment: taking it off its networks", "container", r.ContainerID, "err", err)
		r.stop()
		return
	}
	a.log.Info("adopted a container's attachment", "container", r.ContainerID, "attachment", r.TaskID)
}

// endOrphan ends an attachment assigned here that no container has: an
// earlier daemon lost its record, or a berth-agent run died mid-attach.
func (a *attachments) endOrphan(ctx context.Context, t *pb.Task) {
	a.log.Warn("ending an attachment no container here has", "attachment", t.GetId(), "container", t.GetSpec().GetAttachment().GetContainerId())
	if a.net != nil {
		a.net.Detach(t)
	}
	a.detachRetrying(ctx, t.GetId())
}
