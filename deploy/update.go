package deploy

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "berth/proto/berth/v1"
)

// Swarm's defaults for a service that sets no update or rollback config.
const (
	// DefaultUpdateParallelism is how many units change at once.
	DefaultUpdateParallelism = 1
	// DefaultUpdateMonitor is how long a new task is watched for failure
	// when the config sets no monitor.
	DefaultUpdateMonitor = 5 * time.Second
)

// Update status messages, as Docker Swarm words them.
const (
	msgUpdating          = "update in progress"
	msgUpdateCompleted   = "update completed"
	msgRollbackCompleted = "rollback completed"
)

type updateState = pb.UpdateStatus_State

const (
	stUpdating          = pb.UpdateStatus_STATE_UPDATING
	stPaused            = pb.UpdateStatus_STATE_PAUSED
	stCompleted         = pb.UpdateStatus_STATE_COMPLETED
	stRollbackStarted   = pb.UpdateStatus_STATE_ROLLBACK_STARTED
	stRollbackPaused    = pb.UpdateStatus_STATE_ROLLBACK_PAUSED
	stRollbackCompleted = pb.UpdateStatus_STATE_ROLLBACK_COMPLETED
)

// rollout is one service as the updater sees it.
type rollout struct {
	svc *pb.Service
	// units are the service's units with tasks, each with every task it
	// holds (live or not), in the order they are updated.
	units []unitTasks
	now   time.Time
	// upSince is when the updater first saw a task up; zero if it has not.
	upSince func(taskID string) time.Time
}

type unitTasks struct {
	u     unit
	tasks []*pb.Task
}

// rolloutPlan is what one service needs written.
type rolloutPlan struct {
	service string
	version uint64 // the spec version planned against
	// status replaces the service's update status when set.
	status *pb.UpdateStatus
	// rollback swaps the spec back to previous_spec (failure action rollback).
	rollback bool
	replace  []replacement
	// retire are old tasks of start-first units whose new task is up.
	retire []*pb.Task
	// due is when to look again (a delay or a monitor period ends).
	due time.Time
}

// replacement updates one unit: stop the old live tasks (none for
// start-first, which keeps them until the new task is up) and create a
// new task with the current spec, in one write. live are the unit's live
// tasks as planned; the write is skipped if they changed.
type replacement struct {
	u      unit
	live   []string
	stop   []*pb.Task
	create *pb.Task
}

func (p rolloutPlan) empty() bool {
	return p.status == nil && !p.rollback && len(p.replace) == 0 && len(p.retire) == 0
}

// planRollout decides the next step of one service's rolling update. It is
// a pure function of its input:
//
//   - A unit is dirty when a live task (desired running) runs a task spec
//     other than the service's and no live task runs the current one.
//     Spec contents are compared, not versions, so a rollback leaves the
//     units that never changed alone.
//   - No dirty unit, nothing pending and no status: there is no update.
//     Dirty units under no status, or a finished one, start an update.
//   - A paused update (or rollback) does nothing until the next service
//     update starts it again (the Control API sets it updating).
//   - The config is the spec's rollback config during a rollback and its
//     update config otherwise, with Swarm's defaults when unset.
//   - A failure is a task of this update (current spec, created since the
//     update started) that ended on its own (complete, failed, rejected)
//     before it came up or within monitor of its start. When failures over
//     the units the update touches exceed max_failure_ratio, the failure
//     action runs: pause stops the update; rollback returns to the
//     previous spec (a failing rollback pauses: a rollback never rolls
//     back); continue goes on.
//   - A unit is busy while its new task is not up yet (running, and
//     healthy if it has a check), and for delay after it came up. At most
//     parallelism units are busy (0: no limit); free places go to dirty
//     units in order. Stop-first shuts the old task down in the write that
//     creates the new one; start-first keeps it until the new one is up,
//     then retires it, so at most parallelism extra tasks run.
//   - A dirty unit whose last new task failed waits out the restart
//     policy's delay before it gets another, and is left as it is when
//     the policy gives up (see retryAt).
//   - With no dirty or busy unit left, the update completes once monitor
//     has passed since its last task came up.
//   - A global service's units on paused nodes take no part in an update
//     (their tasks keep the old spec while the node is paused). A dirty
//     global unit under a finished update is such a unit back from pause:
//     it is replaced at once, stop-first, with no update status and none
//     of the update settings, as Swarm's global orchestrator does (see
//     catchUp).
func planRollout(in rollout) rolloutPlan {
	svc := in.svc
	p := rolloutPlan{service: svc.GetId(), version: svc.GetSpecVersion()}
	st := svc.GetUpdateStatus()
	cfg := configFor(svc)
	sv := surveyUnits(in, st, cfg)
	p.retire, p.due = sv.retire, sv.due
	state := st.GetState()
	switch state {
	case stPaused, stRollbackPaused:
		return p
	case stUpdating, stRollbackStarted:
	case stCompleted, stRollbackCompleted:
		if len(sv.dirty) == 0 {
			return p
		}
		if svc.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL {
			return catchUp(p, sv.dirty, svc, in.now)
		}
		fallthrough
	default:
		if len(sv.dirty) == 0 {
			return p
		}
		st = &pb.UpdateStatus{State: stUpdating, StartedAt: timestamppb.New(in.now), Message: msgUpdating}
		p.status, state = st, stUpdating
	}
	if cfg.action != pb.UpdateConfig_FAILURE_ACTION_CONTINUE {
		if f, n := failures(in, st, cfg.monitor, len(sv.dirty)); f != nil && float64(n.failed) > float64(cfg.ratio)*float64(n.touched) {
			return failed(p, svc, state, f, in.now)
		}
	}
	if len(sv.dirty) == 0 && sv.busy == 0 {
		return complete(p, st, state, sv.lastUp.Add(cfg.monitor), in.now)
	}
	free := len(sv.dirty)
	if cfg.parallelism > 0 {
		free = max(0, cfg.parallelism-sv.busy)
	}
	for _, ut := range sv.dirty[:min(free, len(sv.dirty))] {
		p.replace = append(p.replace, replaceUnit(ut, svc, cfg.order, in.now))
	}
	return p
}

// survey is where a service's units stand in its update.
type survey struct {
	dirty  []unitTasks // units to update, in order
	busy   int         // units whose new task is not up, or in its delay
	lastUp time.Time   // when the update's last task came up
	retire []*pb.Task  // old tasks of start-first units whose new task is up
	due    time.Time   // when a delay ends
}

// surveyUnits sorts a service's units into dirty, busy and done (see
// planRollout for the rules).
func surveyUnits(in rollout, st *pb.UpdateStatus, cfg updateConfig) survey {
	var sv survey
	for _, ut := range in.units {
		cur, old := liveTasks(ut.tasks, in.svc)
		switch {
		case len(cur) == 0 && len(old) > 0:
			switch ok, at := retryAt(ut.tasks, in.svc, st); {
			case !ok:
			case at.After(in.now):
				sv.busy++
				sv.due = earliest(sv.due, at)
			default:
				sv.dirty = append(sv.dirty, ut)
			}
		case len(cur) > 0 && !up(cur[0]):
			if !finished(cur[0]) {
				sv.busy++
			}
		case len(cur) > 0:
			// Retired in the write that may start the next unit, before
			// it: no committed state runs more extra tasks than allowed.
			sv.retire = append(sv.retire, old...)
			if !ofUpdate(cur[0], st) {
				continue
			}
			at := in.upSince(cur[0].GetId())
			sv.lastUp = later(sv.lastUp, at)
			if end := at.Add(cfg.delay); cfg.delay > 0 && end.After(in.now) {
				sv.busy++
				sv.due = earliest(sv.due, end)
			}
		}
	}
	return sv
}

// updateConfig is an UpdateConfig with Swarm's defaults applied.
type updateConfig struct {
	parallelism    int
	delay, monitor time.Duration
	action         pb.UpdateConfig_FailureAction
	ratio          float32
	order          pb.UpdateConfig_Order
}

// configFor is the config the service's current rollout runs under.
func configFor(svc *pb.Service) updateConfig {
	uc := svc.GetSpec().GetUpdate()
	switch svc.GetUpdateStatus().GetState() {
	case stRollbackStarted, stRollbackPaused:
		uc = svc.GetSpec().GetRollback()
	}
	if uc == nil {
		return updateConfig{parallelism: DefaultUpdateParallelism, monitor: DefaultUpdateMonitor}
	}
	c := updateConfig{
		parallelism: int(uc.GetParallelism()), delay: uc.GetDelay().AsDuration(),
		monitor: DefaultUpdateMonitor, action: uc.GetFailureAction(),
		ratio: uc.GetMaxFailureRatio(), order: uc.GetOrder(),
	}
	if uc.Monitor != nil {
		c.monitor = uc.GetMonitor().AsDuration()
	}
	return c
}

// liveTasks splits a unit's live tasks into those with the service's task
// spec (newest first) and the others.
func liveTasks(tasks []*pb.Task, svc *pb.Service) (cur, old []*pb.Task) {
	for _, t := range tasks {
		if t.GetDesiredState() > running {
			continue
		}
		if isCurrent(t, svc) {
			cur = append(cur, t)
		} else {
			old = append(old, t)
		}
	}
	slices.SortFunc(cur, better)
	return cur, old
}

// isCurrent reports whether a task runs the service's current task spec
// and joins the service's current networks. A task made before tasks
// recorded their networks is judged by its spec alone: an upgrade of the
// managers rolls no task.
func isCurrent(t *pb.Task, svc *pb.Service) bool {
	return proto.Equal(t.GetSpec(), svc.GetSpec().GetTask()) &&
		(t.GetSpecNetworks() == nil || sameNetworks(t.GetSpecNetworks().GetAttachments(), svc.GetSpec().GetNetworks()))
}

// TasksChange reports whether going from spec a to spec b changes what a
// service's tasks run: their task spec or the networks they join (Swarm
// keeps networks in the task spec for this reason). A change of anything
// else, such as replicas or labels, leaves the tasks as they are.
func TasksChange(a, b *pb.ServiceSpec) bool {
	return !proto.Equal(a.GetTask(), b.GetTask()) || !sameNetworks(a.GetNetworks(), b.GetNetworks())
}

// sameNetworks compares two lists of network attachments, in order.
func sameNetworks(a, b []*pb.NetworkAttachment) bool {
	return slices.EqualFunc(a, b, func(x, y *pb.NetworkAttachment) bool { return proto.Equal(x, y) })
}

// up reports whether a task counts as running for an update: running, and
// healthy when it has a health check.
func up(t *pb.Task) bool {
	if t.GetStatus().GetState() != running {
		return false
	}
	h := t.GetStatus().GetContainer().GetHealth()
	return h == pb.ContainerStatus_HEALTH_NONE || h == pb.ContainerStatus_HEALTH_HEALTHY
}

// ofUpdate reports whether a task was made for the update st describes.
func ofUpdate(t *pb.Task, st *pb.UpdateStatus) bool {
	return st.GetStartedAt() != nil && !t.GetMeta().GetCreatedAt().AsTime().Before(st.GetStartedAt().AsTime())
}

type failureCount struct{ failed, touched int }

// failures counts the update's failed tasks and the units it touches (the
// dirty ones and those that got a task of the update), and returns the
// newest failure.
func failures(in rollout, st *pb.UpdateStatus, monitor time.Duration, dirty int) (*pb.Task, failureCount) {
	n := failureCount{touched: dirty}
	var last *pb.Task
	for _, ut := range in.units {
		touched := false
		for _, t := range ut.tasks {
			if !isCurrent(t, in.svc) || !ofUpdate(t, st) {
				continue
			}
			touched = true
			if failedEarly(t, monitor) {
				n.failed++
				if last == nil || finishedAt(t).After(finishedAt(last)) {
					last = t
				}
			}
		}
		if touched {
			n.touched++
		}
	}
	return last, n
}

// retryAt says whether a dirty unit may get a new task of this update and
// when: a unit whose last new task failed waits out the restart policy's
// delay, as a restart would, and gives up when the policy does.
func retryAt(tasks []*pb.Task, svc *pb.Service, st *pb.UpdateStatus) (bool, time.Time) {
	var last *pb.Task
	for _, t := range tasks {
		if isCurrent(t, svc) && ofUpdate(t, st) && endedOnItsOwn(t) && (last == nil || finishedAt(t).After(finishedAt(last))) {
			last = t
		}
	}
	if last == nil {
		return true, time.Time{}
	}
	return restartAt(last, tasks, svc.GetSpec().GetTask().GetRestart())
}

// failedEarly reports whether a task ended on its own before it ran for
// monitor. Both times come from the task's node, so clocks agree.
func failedEarly(t *pb.Task, monitor time.Duration) bool {
	if !endedOnItsOwn(t) {
		return false
	}
	c := t.GetStatus().GetContainer()
	if c.GetStartedAt() == nil || c.GetFinishedAt() == nil {
		return true
	}
	return c.GetFinishedAt().AsTime().Sub(c.GetStartedAt().AsTime()) <= monitor
}

// failed runs the failure action for a failure of task t.
func failed(p rolloutPlan, svc *pb.Service, state updateState, t *pb.Task, now time.Time) rolloutPlan {
	why := "failure or early termination of task " + t.GetId() + taskError(t)
	st := proto.Clone(svc.GetUpdateStatus()).(*pb.UpdateStatus)
	if p.status != nil {
		st = p.status
	}
	cfg := configFor(svc)
	switch {
	case state == stRollbackStarted:
		st.State, st.Message = stRollbackPaused, "rollback paused due to "+why
	case cfg.action == pb.UpdateConfig_FAILURE_ACTION_ROLLBACK && svc.GetPreviousSpec() != nil:
		st = &pb.UpdateStatus{State: stRollbackStarted, StartedAt: timestamppb.New(now), Message: "update rolled back due to " + why}
		p.rollback = true
	default:
		st.State, st.Message = stPaused, "update paused due to "+why
	}
	p.status = st
	return p
}

// taskError says why a task ended, for a status message.
func taskError(t *pb.Task) string {
	s := t.GetStatus()
	c := s.GetContainer()
	switch {
	case c.GetFinishedAt() != nil && c.GetExitCode() != 0 && (c.GetExitReason() == "" || c.GetExitReason() == "Error"):
		return fmt.Sprintf(": exit %d", c.GetExitCode())
	case s.GetErr() != "":
		return ": " + s.GetErr()
	}
	return ""
}

// complete finishes an update whose units are all done, once monitor has
// passed since its last task came up.
func complete(p rolloutPlan, st *pb.UpdateStatus, state updateState, at, now time.Time) rolloutPlan {
	if at.After(now) {
		p.due = earliest(p.due, at)
		return p
	}
	st = proto.Clone(st).(*pb.UpdateStatus)
	st.State, st.Message, st.CompletedAt = stCompleted, msgUpdateCompleted, timestamppb.New(now)
	if state == stRollbackStarted {
		st.State, st.Message = stRollbackCompleted, msgRollbackCompleted
	}
	p.status = st
	return p
}

// catchUp replaces the dirty units of a global service whose update has
// finished: nodes that were paused during it and are active again. As in
// Swarm (reconcileOneNode), this is not a rolling update — it observes no
// parallelism, delay or failure action and leaves the update status as it
// is — the node's task is brought up to date the way a node that joins
// gets its first one.
func catchUp(p rolloutPlan, dirty []unitTasks, svc *pb.Service, now time.Time) rolloutPlan {
	for _, ut := range dirty {
		p.replace = append(p.replace, replaceUnit(ut, svc, pb.UpdateConfig_ORDER_STOP_FIRST, now))
	}
	return p
}

// replaceUnit plans the update of one dirty unit. A unit whose old task is
// not running gains nothing from start-first: it is replaced stop-first.
func replaceUnit(ut unitTasks, svc *pb.Service, order pb.UpdateConfig_Order, now time.Time) replacement {
	_, old := liveTasks(ut.tasks, svc)
	r := replacement{u: ut.u, create: newTask(svc, ut.u, now)}
	anyUp := false
	for _, t := range old {
		r.live = append(r.live, t.GetId())
		anyUp = anyUp || up(t)
	}
	if order != pb.UpdateConfig_ORDER_START_FIRST || !anyUp {
		r.stop = old
	}
	return r
}

// orderUnits sorts a service's units for an update: units whose tasks are
// not up first (replacing them costs nothing), then by slot or node.
func orderUnits(units []unitTasks) {
	rank := func(ut unitTasks) int {
		for _, t := range ut.tasks {
			if t.GetDesiredState() <= running && up(t) {
				return 1
			}
		}
		return 0
	}
	slices.SortFunc(units, func(a, b unitTasks) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.u.slot, b.u.slot), cmp.Compare(a.u.node, b.u.node))
	})
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
