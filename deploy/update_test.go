package deploy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "berth/proto/berth/v1"
)

// A rollout fixture: a service of n slots updated from image v1 to v2 at
// t0, its tasks built by hand and the clock moved by hand.
type fixture struct {
	svc   *pb.Service
	units map[uint64][]*pb.Task
	now   time.Time
	upAt  map[string]time.Time
	seq   int
}

func newFixture(n int, cfg *pb.UpdateConfig) *fixture {
	v1 := &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "app:v1"}}
	v2 := &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "app:v2"}}
	f := &fixture{
		svc: &pb.Service{Id: "svc", SpecVersion: 2,
			Spec:         &pb.ServiceSpec{Replicas: proto.Int64(int64(n)), Task: v2, Update: cfg, Rollback: cfg},
			PreviousSpec: &pb.ServiceSpec{Replicas: proto.Int64(int64(n)), Task: v1, Update: cfg, Rollback: cfg},
			UpdateStatus: &pb.UpdateStatus{State: stUpdating, StartedAt: timestamppb.New(t0), Message: msgUpdating},
		},
		units: map[uint64][]*pb.Task{}, now: t0, upAt: map[string]time.Time{},
	}
	for slot := uint64(1); slot <= uint64(n); slot++ {
		t := f.task(slot, v1, t0.Add(-time.Hour))
		f.setState(t, running)
	}
	return f
}

func (f *fixture) task(slot uint64, spec *pb.TaskSpec, created time.Time) *pb.Task {
	f.seq++
	t := &pb.Task{Id: fmt.Sprintf("t%d", f.seq), ServiceId: "svc", Slot: slot, Spec: proto.Clone(spec).(*pb.TaskSpec),
		DesiredState: running, Meta: &pb.Meta{CreatedAt: timestamppb.New(created)},
		Status: &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING}}
	f.units[slot] = append(f.units[slot], t)
	return t
}

func (f *fixture) setState(t *pb.Task, s pb.TaskState) {
	t.Status.State = s
	if s == running {
		t.Status.Container = &pb.ContainerStatus{StartedAt: timestamppb.New(f.now)}
		f.upAt[t.GetId()] = f.now
	}
}

// fail ends a task on its own after it ran for d.
func (f *fixture) fail(t *pb.Task, d time.Duration) {
	start := f.now.Add(-d)
	t.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_FAILED, Timestamp: timestamppb.New(f.now), Err: "exit 1",
		Container: &pb.ContainerStatus{StartedAt: timestamppb.New(start), FinishedAt: timestamppb.New(f.now), ExitCode: 1}}
}

func (f *fixture) plan() rolloutPlan {
	var units []unitTasks
	for slot, ts := range f.units {
		units = append(units, unitTasks{u: unit{service: "svc", slot: slot}, tasks: ts})
	}
	orderUnits(units)
	return planRollout(rollout{svc: f.svc, units: units, now: f.now,
		upSince: func(id string) time.Time { return f.upAt[id] }})
}

// apply plays the store writer: the plan's replacements, retirements and
// status land in the fixture.
func (f *fixture) apply(p rolloutPlan) {
	for _, t := range p.retire {
		t.DesiredState = shutdown
	}
	for _, r := range p.replace {
		for _, t := range r.stop {
			t.DesiredState = shutdown
		}
		r.create.Meta = &pb.Meta{CreatedAt: timestamppb.New(f.now)}
		f.units[r.u.slot] = append(f.units[r.u.slot], r.create)
	}
	if p.rollback {
		f.svc.Spec, f.svc.PreviousSpec = f.svc.PreviousSpec, nil
	}
	if p.status != nil {
		f.svc.UpdateStatus = p.status
	}
}

// newest is a slot's newest task.
func (f *fixture) newest(slot uint64) *pb.Task { ts := f.units[slot]; return ts[len(ts)-1] }

func (f *fixture) slotsOf(p rolloutPlan) []uint64 {
	var out []uint64
	for _, r := range p.replace {
		out = append(out, r.u.slot)
	}
	return out
}

func cfg(par uint64, order pb.UpdateConfig_Order, action pb.UpdateConfig_FailureAction, ratio float32, delay, monitor time.Duration) *pb.UpdateConfig {
	return &pb.UpdateConfig{Parallelism: par, Order: order, FailureAction: action, MaxFailureRatio: ratio,
		Delay: durationpb.New(delay), Monitor: durationpb.New(monitor)}
}

const (
	stopFirst  = pb.UpdateConfig_ORDER_STOP_FIRST
	startFirst = pb.UpdateConfig_ORDER_START_FIRST
	pause      = pb.UpdateConfig_FAILURE_ACTION_PAUSE
	cont       = pb.UpdateConfig_FAILURE_ACTION_CONTINUE
	rollbackOn = pb.UpdateConfig_FAILURE_ACTION_ROLLBACK
)

// runBatch starts the tasks a plan created and returns their slots.
func (f *fixture) runBatch(p rolloutPlan) []uint64 {
	for _, r := range p.replace {
		f.setState(r.create, running)
	}
	return f.slotsOf(p)
}

func TestRolloutBatches(t *testing.T) {
	f := newFixture(5, cfg(2, stopFirst, pause, 0, 0, time.Second))
	var batches [][]uint64
	for range 10 {
		p := f.plan()
		if len(p.replace) == 0 {
			break
		}
		for _, r := range p.replace {
			if len(r.stop) != 1 {
				t.Fatalf("stop-first slot %d stops %d tasks, want its old one", r.u.slot, len(r.stop))
			}
		}
		f.apply(p)
		if again := f.plan(); len(again.replace) != 0 {
			t.Fatalf("a batch in flight: next plan replaces %v, want nothing until it is up", f.slotsOf(again))
		}
		batches = append(batches, f.runBatch(p))
	}
	if got := fmt.Sprint(batches); got != "[[1 2] [3 4] [5]]" {
		t.Fatalf("batches %s, want [[1 2] [3 4] [5]]", got)
	}
	// Done: completes once monitor has passed since the last task came up.
	p := f.plan()
	if p.status != nil || !p.due.Equal(f.now.Add(time.Second)) {
		t.Fatalf("before monitor ends: status %v, due %v; want none and due %v", p.status, p.due, f.now.Add(time.Second))
	}
	f.now = f.now.Add(time.Second)
	p = f.plan()
	if p.status.GetState() != stCompleted || p.status.GetMessage() != "update completed" || p.status.GetCompletedAt() == nil {
		t.Fatalf("after monitor: status %v, want completed", p.status)
	}
}

func TestRolloutParallelismZeroIsAll(t *testing.T) {
	f := newFixture(7, cfg(0, stopFirst, pause, 0, 0, 0))
	if got := len(f.plan().replace); got != 7 {
		t.Fatalf("parallelism 0 replaces %d of 7 slots at once, want all", got)
	}
}

func TestRolloutDefaults(t *testing.T) {
	f := newFixture(3, nil)
	p := f.plan()
	if len(p.replace) != 1 || len(p.replace[0].stop) != 1 {
		t.Fatalf("no config: %d slots, want 1 at a time, stop-first", len(p.replace))
	}
	f.apply(p)
	f.runBatch(p)
	f.now = f.now.Add(time.Second)
	f.fail(f.newest(1), time.Second)
	if p := f.plan(); p.status.GetState() != stPaused {
		t.Fatalf("no config, failure 1s after start: %v, want paused (monitor 5s, action pause)", p.status)
	}
}

func TestRolloutDelay(t *testing.T) {
	f := newFixture(3, cfg(1, stopFirst, pause, 0, 10*time.Second, 0))
	p := f.plan()
	f.apply(p)
	f.runBatch(p)
	p = f.plan()
	if len(p.replace) != 0 || !p.due.Equal(f.now.Add(10*time.Second)) {
		t.Fatalf("right after slot 1 came up: replaces %v, due %v; want nothing until %v", f.slotsOf(p), p.due, f.now.Add(10*time.Second))
	}
	f.now = f.now.Add(9 * time.Second)
	if p := f.plan(); len(p.replace) != 0 {
		t.Fatalf("9s into a 10s delay: replaces %v", f.slotsOf(p))
	}
	f.now = f.now.Add(time.Second)
	if p := f.plan(); fmt.Sprint(f.slotsOf(p)) != "[2]" {
		t.Fatalf("delay over: replaces %v, want [2]", f.slotsOf(p))
	}
}

func TestRolloutMonitor(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ran     time.Duration
		started bool
		paused  bool
	}{
		{"fails within monitor", 5 * time.Second, true, true},
		{"fails after monitor", 11 * time.Second, true, false},
		{"never started", 0, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(3, cfg(1, stopFirst, pause, 0, 0, 10*time.Second))
			p := f.plan()
			f.apply(p)
			f.runBatch(p)
			f.now = f.now.Add(tc.ran)
			f.fail(f.newest(1), tc.ran)
			if !tc.started {
				f.newest(1).Status.Container = nil
			}
			p = f.plan()
			if got := p.status.GetState() == stPaused; got != tc.paused {
				t.Fatalf("status %v, paused=%v want %v", p.status, got, tc.paused)
			}
			if tc.paused {
				want := "update paused due to failure or early termination of task " + f.newest(1).GetId() + ": exit 1"
				if p.status.GetMessage() != want {
					t.Fatalf("message %q, want %q", p.status.GetMessage(), want)
				}
				if len(p.replace) != 0 {
					t.Fatalf("a paused update replaces %v", f.slotsOf(p))
				}
				f.apply(p)
				if p := f.plan(); !p.empty() {
					t.Fatalf("paused, next plan is not empty: %+v", p)
				}
			}
		})
	}
}

func TestRolloutFailureActions(t *testing.T) {
	t.Run("continue", func(t *testing.T) {
		f := newFixture(3, cfg(1, stopFirst, cont, 0, 0, 10*time.Second))
		p := f.plan()
		f.apply(p)
		f.runBatch(p)
		f.fail(f.newest(1), 0)
		f.newest(1).DesiredState = shutdown // the orchestrator restarted it
		restarted := f.task(1, f.svc.Spec.Task, f.now)
		f.setState(restarted, running)
		if p := f.plan(); p.status != nil || fmt.Sprint(f.slotsOf(p)) != "[2]" {
			t.Fatalf("continue: status %v, replaces %v; want none and [2]", p.status, f.slotsOf(p))
		}
	})
	t.Run("rollback", func(t *testing.T) {
		f := newFixture(3, cfg(1, stopFirst, rollbackOn, 0, 0, 10*time.Second))
		p := f.plan()
		f.apply(p)
		f.runBatch(p)
		f.fail(f.newest(1), 0)
		p = f.plan()
		if !p.rollback || p.status.GetState() != stRollbackStarted || !strings.HasPrefix(p.status.GetMessage(), "update rolled back due to failure or early termination of task") {
			t.Fatalf("rollback: rollback=%v status %v", p.rollback, p.status)
		}
		f.apply(p)
		f.svc.SpecVersion++
		f.newest(1).DesiredState = shutdown
		f.task(1, f.svc.Spec.Task, f.now) // the orchestrator's restart, now with v1
		// Slots 2 and 3 never changed: a rollback leaves them alone.
		p = f.plan()
		if len(p.replace) != 0 {
			t.Fatalf("rollback replaces %v; slots 2 and 3 run v1 already", f.slotsOf(p))
		}
		f.setState(f.newest(1), running)
		f.now = f.now.Add(10 * time.Second)
		if p := f.plan(); p.status.GetState() != stRollbackCompleted || p.status.GetMessage() != "rollback completed" {
			t.Fatalf("rollback done: %v", p.status)
		}
	})
	t.Run("a failing rollback pauses", func(t *testing.T) {
		f := newFixture(2, cfg(1, stopFirst, rollbackOn, 0, 0, 10*time.Second))
		f.svc.UpdateStatus.State = stRollbackStarted
		p := f.plan()
		f.apply(p)
		f.runBatch(p)
		f.fail(f.newest(p.replace[0].u.slot), 0)
		p = f.plan()
		if p.rollback || p.status.GetState() != stRollbackPaused || !strings.HasPrefix(p.status.GetMessage(), "rollback paused due to") {
			t.Fatalf("failed rollback: rollback=%v status %v; want rollback paused", p.rollback, p.status)
		}
	})
}

func TestRolloutMaxFailureRatio(t *testing.T) {
	// 10 slots, ratio 0.2: two failures are tolerated, the third pauses.
	f := newFixture(10, cfg(1, stopFirst, pause, 0.2, 0, 10*time.Second))
	for i := 1; i <= 3; i++ {
		p := f.plan()
		if i < 3 && p.status != nil {
			t.Fatalf("after %d failures: %v, want going on", i-1, p.status)
		}
		f.apply(p)
		f.runBatch(p)
		f.fail(f.newest(p.replace[0].u.slot), 0)
		f.newest(p.replace[0].u.slot).DesiredState = shutdown
		f.setState(f.task(p.replace[0].u.slot, f.svc.Spec.Task, f.now), running)
	}
	if p := f.plan(); p.status.GetState() != stPaused {
		t.Fatalf("3 of 10 failed over ratio 0.2: %v, want paused", p.status)
	}
}

func TestRolloutStartFirst(t *testing.T) {
	f := newFixture(4, cfg(2, startFirst, pause, 0, 0, 0))
	p := f.plan()
	if len(p.replace) != 2 {
		t.Fatalf("start-first replaces %d, want 2", len(p.replace))
	}
	for _, r := range p.replace {
		if len(r.stop) != 0 {
			t.Fatalf("start-first stops slot %d's old task at once", r.u.slot)
		}
	}
	f.apply(p)
	if p := f.plan(); len(p.replace) != 0 || len(p.retire) != 0 {
		t.Fatalf("two extra tasks pending: replaces %v, retires %d; want nothing more", f.slotsOf(p), len(p.retire))
	}
	// The orchestrator keeps both tasks of a start-first slot meanwhile.
	kept := decide(unitState{u: unit{service: "svc", slot: 1}, svc: f.svc, tasks: f.units[1], keep: true, create: true, now: f.now})
	if len(kept.stop) != 0 || kept.create != nil {
		t.Fatalf("orchestrator on a start-first slot: stops %d, creates %v; want both kept", len(kept.stop), kept.create)
	}
	f.setState(f.newest(1), running)
	p = f.plan()
	if len(p.retire) != 1 {
		t.Fatalf("slot 1's new task is up: retires %d tasks, want its v1 task", len(p.retire))
	}
	if p.retire[0].GetSpec().GetContainer().GetImage() != "app:v1" {
		t.Fatalf("retires %s, want the v1 task", p.retire[0].GetSpec().GetContainer().GetImage())
	}
	if fmt.Sprint(f.slotsOf(p)) != "[3]" {
		t.Fatalf("one of two extra tasks done: replaces %v, want [3]", f.slotsOf(p))
	}
}

func TestRolloutSupersede(t *testing.T) {
	f := newFixture(3, cfg(1, stopFirst, pause, 0, 0, 0))
	p := f.plan()
	f.apply(p)
	f.runBatch(p) // slot 1 runs v2
	p = f.plan()
	f.apply(p) // slot 2's v2 task is pending
	// v3 arrives: every slot moves to v3, including slot 2's pending v2.
	f.svc.PreviousSpec, f.svc.Spec = f.svc.Spec, proto.Clone(f.svc.Spec).(*pb.ServiceSpec)
	f.svc.Spec.Task.Container.Image = "app:v3"
	f.now = f.now.Add(time.Second)
	f.svc.UpdateStatus = &pb.UpdateStatus{State: stUpdating, StartedAt: timestamppb.New(f.now)}
	done := map[uint64]int{}
	for range 10 {
		p := f.plan()
		if len(p.replace) == 0 {
			break
		}
		f.apply(p)
		for _, slot := range f.runBatch(p) {
			done[slot]++
		}
	}
	if fmt.Sprint(done) != "map[1:1 2:1 3:1]" {
		t.Fatalf("v3 updates per slot %v, want each slot once", done)
	}
	for slot := uint64(1); slot <= 3; slot++ {
		for _, t2 := range f.units[slot] {
			if t2.GetDesiredState() == running && t2.GetSpec().GetContainer().GetImage() != "app:v3" {
				t.Fatalf("slot %d keeps a live %s task", slot, t2.GetSpec().GetContainer().GetImage())
			}
		}
	}
}

func TestRolloutStartsWhenNoStatus(t *testing.T) {
	f := newFixture(2, nil)
	f.svc.UpdateStatus = nil
	p := f.plan()
	if p.status.GetState() != stUpdating || len(p.replace) != 1 {
		t.Fatalf("dirty slots, no status: %v and %d replaced; want updating, 1", p.status, len(p.replace))
	}
	f.svc.Spec = f.svc.PreviousSpec // nothing dirty
	f.svc.UpdateStatus = nil
	if p := f.plan(); !p.empty() {
		t.Fatalf("nothing dirty, no status: %+v, want no plan", p)
	}
}

// TestRolloutResumesAfterPause: a paused update does nothing; the next
// service update (a fresh start time) goes on with the units left, and the
// failures before it no longer count.
func TestRolloutResumesAfterPause(t *testing.T) {
	f := newFixture(3, cfg(1, stopFirst, pause, 0, 0, 10*time.Second))
	p := f.plan()
	f.apply(p)
	f.runBatch(p)
	f.fail(f.newest(1), 0)
	f.apply(f.plan())
	if f.svc.GetUpdateStatus().GetState() != stPaused {
		t.Fatalf("status %v, want paused", f.svc.GetUpdateStatus())
	}
	f.newest(1).DesiredState = shutdown
	f.setState(f.task(1, f.svc.Spec.Task, f.now), running) // restarted meanwhile
	if p := f.plan(); !p.empty() {
		t.Fatalf("paused: %+v", p)
	}
	f.now = f.now.Add(time.Minute)
	f.svc.UpdateStatus = &pb.UpdateStatus{State: stUpdating, StartedAt: timestamppb.New(f.now)}
	p = f.plan()
	if p.status != nil || fmt.Sprint(f.slotsOf(p)) != "[2]" {
		t.Fatalf("resumed: status %v, replaces %v; want no failure and slot 2", p.status, f.slotsOf(p))
	}
}

// TestRolloutForce: `service update --force` changes only force_update;
// every slot is replaced all the same, batch by batch.
func TestRolloutForce(t *testing.T) {
	f := newFixture(4, cfg(2, stopFirst, pause, 0, 0, 0))
	f.svc.Spec.Task = proto.Clone(f.svc.PreviousSpec.Task).(*pb.TaskSpec)
	f.svc.Spec.Task.ForceUpdate++
	p := f.plan()
	if fmt.Sprint(f.slotsOf(p)) != "[1 2]" {
		t.Fatalf("--force replaces %v first, want [1 2]", f.slotsOf(p))
	}
	if got := p.replace[0].create.GetSpec().GetForceUpdate(); got != 1 {
		t.Fatalf("new task's force_update %d, want 1", got)
	}
}
