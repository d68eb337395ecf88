package deploy

import (
	"time"

	pb "berth/proto/berth/v1"
)

// DefaultRestartDelay is how long a finished task waits for its
// replacement when the restart policy sets no delay, as in Docker Swarm.
const DefaultRestartDelay = 5 * time.Second

// StableRun is how long a task must have run for its replacement to start
// at once when the restart policy sets no delay.
const StableRun = 10 * time.Second

// restartAt decides whether a finished task t gets a replacement in its
// unit, and when. unitTasks are all tasks of the unit, t included.
//
// Condition none never restarts; on-failure does not restart a task that
// completed (exit 0); any restarts every finish.
//
// Attempts: with max_attempts set, a task that ended on its own (complete,
// failed, rejected) counts as one attempt; when t's finish brings the
// attempts in the window ending at t's finish above max_attempts, the unit
// gives up and t stays as it is. The window is anchored at t's finish, not
// at the present, so the verdict never changes as time passes. A window of
// 0 counts every attempt the store still holds (the reaper keeps the
// newest max_attempts of them).
//
// Delay: an explicit delay, 0 included, is always honoured. Without one the
// delay is DefaultRestartDelay, except that a task whose container ran for
// at least StableRun restarts at once: a crash after a healthy run is not a
// crash loop, and its users should not wait 5s for a replacement, while a
// task that dies as it starts still restarts only every 5s. The delay runs
// from t's finish, so a new leader keeps the same schedule.
func restartAt(t *pb.Task, unitTasks []*pb.Task, pol *pb.RestartPolicy) (bool, time.Time) {
	state := t.GetStatus().GetState()
	switch pol.GetCondition() {
	case pb.RestartPolicy_CONDITION_NONE:
		return false, time.Time{}
	case pb.RestartPolicy_CONDITION_ON_FAILURE:
		if state == pb.TaskState_TASK_STATE_COMPLETE {
			return false, time.Time{}
		}
	}
	end := finishedAt(t)
	if limit := pol.GetMaxAttempts(); limit > 0 {
		window := pol.GetWindow().AsDuration()
		var n uint64
		for _, u := range unitTasks {
			if !endedOnItsOwn(u) {
				continue
			}
			at := finishedAt(u)
			if at.After(end) || window > 0 && !at.After(end.Add(-window)) {
				continue
			}
			n++
		}
		if n > limit {
			return false, time.Time{}
		}
	}
	if pol.GetDelay() != nil {
		return true, end.Add(pol.GetDelay().AsDuration())
	}
	c := t.GetStatus().GetContainer()
	if c.GetStartedAt() != nil && end.Sub(c.GetStartedAt().AsTime()) >= StableRun {
		return true, end
	}
	return true, end.Add(DefaultRestartDelay)
}

// endedOnItsOwn reports whether a task finished by itself rather than being
// shut down: those are the attempts max_attempts counts.
func endedOnItsOwn(t *pb.Task) bool {
	switch t.GetStatus().GetState() {
	case pb.TaskState_TASK_STATE_COMPLETE, pb.TaskState_TASK_STATE_FAILED, pb.TaskState_TASK_STATE_REJECTED:
		return true
	}
	return false
}

// finishedAt is when a task reached its final state: its status time, else
// its container's exit, else its last write.
func finishedAt(t *pb.Task) time.Time {
	if ts := t.GetStatus().GetTimestamp(); ts != nil {
		return ts.AsTime()
	}
	if ts := t.GetStatus().GetContainer().GetFinishedAt(); ts != nil {
		return ts.AsTime()
	}
	return t.GetMeta().GetUpdatedAt().AsTime()
}
