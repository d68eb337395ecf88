package deploy

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// finishedTask is a task of a unit that ran from start to end and then
// reached state.
func finishedTask(state pb.TaskState, start, end time.Time) *pb.Task {
	c := &pb.ContainerStatus{FinishedAt: timestamppb.New(end)}
	if !start.IsZero() {
		c.StartedAt = timestamppb.New(start)
	}
	return &pb.Task{DesiredState: running, Status: &pb.TaskStatus{State: state, Timestamp: timestamppb.New(end), Container: c}}
}

func TestRestartAt(t *testing.T) {
	const (
		complete = pb.TaskState_TASK_STATE_COMPLETE
		failed   = pb.TaskState_TASK_STATE_FAILED
	)
	end := t0.Add(time.Hour)
	quick := finishedTask(failed, end.Add(-time.Second), end)
	long := finishedTask(failed, end.Add(-StableRun), end)
	neverStarted := finishedTask(failed, time.Time{}, end)
	policy := func(c pb.RestartPolicy_Condition, delay *durationpb.Duration) *pb.RestartPolicy {
		return &pb.RestartPolicy{Condition: c, Delay: delay}
	}
	for _, tc := range []struct {
		name    string
		task    *pb.Task
		pol     *pb.RestartPolicy
		restart bool
		at      time.Time
	}{
		{"no policy: any, 5s after a quick failure", quick, nil, true, end.Add(DefaultRestartDelay)},
		{"5s when it never started", neverStarted, nil, true, end.Add(DefaultRestartDelay)},
		{"at once after a stable run", long, nil, true, end},
		{"explicit delay after a stable run", long, policy(0, durationpb.New(time.Minute)), true, end.Add(time.Minute)},
		{"explicit zero delay", quick, policy(0, durationpb.New(0)), true, end},
		{"none", quick, policy(pb.RestartPolicy_CONDITION_NONE, nil), false, time.Time{}},
		{"on-failure, failed", quick, policy(pb.RestartPolicy_CONDITION_ON_FAILURE, nil), true, end.Add(DefaultRestartDelay)},
		{"on-failure, completed", finishedTask(complete, end.Add(-time.Second), end), policy(pb.RestartPolicy_CONDITION_ON_FAILURE, nil), false, time.Time{}},
		{"any, completed", finishedTask(complete, end.Add(-time.Second), end), nil, true, end.Add(DefaultRestartDelay)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, at := restartAt(tc.task, []*pb.Task{tc.task}, tc.pol)
			if ok != tc.restart || !at.Equal(tc.at) {
				t.Errorf("restartAt = %v, %v; want %v, %v", ok, at, tc.restart, tc.at)
			}
		})
	}
}

func TestRestartMaxAttemptsWindow(t *testing.T) {
	end := t0.Add(time.Hour)
	failedAt := func(d time.Duration) *pb.Task {
		return finishedTask(pb.TaskState_TASK_STATE_FAILED, time.Time{}, end.Add(-d))
	}
	stopped := &pb.Task{DesiredState: shutdown, Status: &pb.TaskStatus{State: shutdown, Timestamp: timestamppb.New(end)}}
	pol := &pb.RestartPolicy{MaxAttempts: 2, Window: durationpb.New(time.Minute), Delay: durationpb.New(0)}
	for _, tc := range []struct {
		name    string
		earlier []*pb.Task
		restart bool
	}{
		{"first failure", nil, true},
		{"second failure", []*pb.Task{failedAt(10 * time.Second)}, true},
		{"third failure in the window", []*pb.Task{failedAt(10 * time.Second), failedAt(50 * time.Second)}, false},
		{"older failures fall out of the window", []*pb.Task{failedAt(10 * time.Second), failedAt(2 * time.Minute)}, true},
		{"shut down tasks are not attempts", []*pb.Task{stopped, stopped, failedAt(time.Second)}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cur := failedAt(0)
			ok, _ := restartAt(cur, append(tc.earlier, cur), pol)
			if ok != tc.restart {
				t.Errorf("restart = %v, want %v", ok, tc.restart)
			}
		})
	}
	unbounded := &pb.RestartPolicy{MaxAttempts: 1}
	cur := failedAt(0)
	if ok, _ := restartAt(cur, []*pb.Task{failedAt(24 * time.Hour), cur}, unbounded); ok {
		t.Errorf("window 0: a failure a day ago still counts; restart = true, want false")
	}
}

func TestRestartDelayHonoured(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", nil)
	spec := replicated("web", 1)
	spec.Task.Restart = nil // the default: any, 5s, at once after a stable run
	svc := e.createService(spec)
	first := e.awaitSlots(svc, "1")["1"]
	e.runOn(first.GetId(), "n1")
	e.clock.Advance(time.Second)
	e.setStatus(first.GetId(), pb.TaskState_TASK_STATE_FAILED, "")
	due := e.clock.Now().Add(DefaultRestartDelay)
	await.True(t, wait, func() bool { return e.clock.waitingFor(due) }, "orchestrator waits for %v", due)

	e.clock.Advance(DefaultRestartDelay - time.Millisecond)
	e.touchNode("n1") // makes the orchestrator look at the slot again
	e.barrier()
	if got := e.awaitSlots(svc, "1")["1"]; got.GetId() != first.GetId() {
		t.Fatalf("replaced before the 5s delay passed")
	}
	e.clock.Advance(time.Millisecond)
	await.True(t, wait, func() bool {
		got, err := e.slots(svc)
		return err == nil && got["1"] != nil && got["1"].GetId() != first.GetId()
	}, "replaced once the delay passed")

	// A task that ran for a while is replaced at once.
	second := e.awaitSlots(svc, "1")["1"]
	e.runOn(second.GetId(), "n1")
	e.clock.Advance(time.Minute)
	e.setStatus(second.GetId(), pb.TaskState_TASK_STATE_FAILED, "")
	await.True(t, wait, func() bool {
		got, err := e.slots(svc)
		return err == nil && got["1"] != nil && got["1"].GetId() != second.GetId()
	}, "replaced at once after a minute's run")
}

func TestRestartGivesUpAfterMaxAttempts(t *testing.T) {
	e := newEnv(t, 0)
	e.addNode("n1", nil)
	spec := replicated("web", 1)
	spec.Task.Restart = &pb.RestartPolicy{MaxAttempts: 6, Window: durationpb.New(time.Hour), Delay: durationpb.New(0)}
	svc := e.createService(spec)
	var last *pb.Task
	for attempt := 1; attempt <= 7; attempt++ {
		await.True(t, wait, func() bool {
			got, err := e.slots(svc)
			if err != nil || got["1"] == nil || got["1"].GetId() == last.GetId() {
				return false
			}
			last = got["1"]
			return true
		}, "attempt %d started", attempt)
		e.runOn(last.GetId(), "n1")
		e.clock.Advance(time.Second)
		e.setStatus(last.GetId(), pb.TaskState_TASK_STATE_FAILED, "")
	}
	e.barrier()
	if got := e.awaitSlots(svc, "1")["1"]; got.GetId() != last.GetId() || got.GetStatus().GetState() != pb.TaskState_TASK_STATE_FAILED {
		t.Fatalf("slot 1 holds %v after 1 run and 6 restarts, want the last failed task left alone", got)
	}
	// The reaper keeps every counted attempt, beyond its history of 5.
	if n := len(e.tasks(svc)); n != 7 {
		t.Errorf("%d tasks, want all 7 attempts kept", n)
	}

	// The verdict stands once the window has passed.
	e.clock.Advance(2 * time.Hour)
	e.touchNode("n1")
	e.barrier()
	if n := len(e.tasks(svc)); n != 7 {
		t.Errorf("%d tasks after the window passed, want the verdict to stand", n)
	}
}
