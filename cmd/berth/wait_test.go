package main

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// TestCreateEndsOnPermanentFailure: service create waits while its tasks
// fail, shows their error under the progress, and gives up with an error
// (exit 1) once the restart policy will not bring the task up: after
// max_attempts, or after the same error three times in a row when the
// policy has no limit. --timeout bounds a wait that would go on.
func TestCreateEndsOnPermanentFailure(t *testing.T) {
	bundle := startManager(t)
	w := startFakeWorker(t, bundle, "w1", &pb.ResourceSet{NanoCpus: 2e9, MemoryBytes: 1 << 30})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const pullErr = "pull busybox:nope: image not found in the registry"
	go w.failAll(ctx, pullErr)

	for _, tc := range []struct {
		name  string
		flags []string
		want  string
	}{
		{"forever", nil, "failed 3 times in a row with: " + pullErr},
		{"twice", []string{"--restart-max-attempts", "1"}, "failed 2 times, the last with: " + pullErr + "; its restart policy allows 1 attempts"},
		{"once", []string{"--restart-condition", "none"}, "its restart condition is none"},
	} {
		args := append([]string{"--tls-dir", bundle, "service", "create", "--name", tc.name, "--restart-delay", "0", "--timeout", "60s"}, tc.flags...)
		start := time.Now()
		out, err := berth(t, append(args, "busybox:nope")...)
		if err == nil || !strings.Contains(err.Error(), tc.name+" did not converge: task "+tc.name+".1 ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create %s: %v, want it to give up saying %q\n%s", tc.name, err, tc.want, out)
		}
		if !strings.Contains(out, "overall progress: 0 out of 1 tasks running\n  task ") || !strings.Contains(out, "failed: "+pullErr) {
			t.Errorf("create %s showed:\n%s\nwant the task's error under the progress", tc.name, out)
		}
		t.Logf("create %s gave up after %v", tc.name, time.Since(start).Round(time.Millisecond))
	}

	start := time.Now()
	_, err := berth(t, "--tls-dir", bundle, "service", "create", "--name", "nowhere", "--constraint", "node.hostname==nowhere", "--timeout", "1s", "busybox")
	if err == nil || !strings.Contains(err.Error(), "stopped waiting for nowhere") || !strings.Contains(err.Error(), "--timeout 1s ran out") {
		t.Errorf("create with --timeout 1s and no node for it: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("--timeout 1s waited %v", d)
	}
}

// failAll reports every task assigned to w as failed with msg, until ctx
// ends.
func (w *fakeWorker) failAll(ctx context.Context, msg string) {
	reported := map[string]bool{}
	for ctx.Err() == nil {
		for _, tk := range w.assigned() {
			if !reported[tk.GetId()] && tk.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING {
				// An error is the test ending: nothing to report to.
				reported[tk.GetId()] = w.report(tk.GetId(), pb.TaskState_TASK_STATE_FAILED, msg) == nil
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestFailuresGiveUp(t *testing.T) {
	failed := func(id string, slot uint64, msg string) *pb.Task {
		return task(id, slot, pb.TaskState_TASK_STATE_SHUTDOWN, pb.TaskState_TASK_STATE_FAILED, msg)
	}
	svc := func(pol *pb.RestartPolicy) *pb.Service {
		return &pb.Service{Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "web"}, Replicas: proto.Int64(2), Task: &pb.TaskSpec{Restart: pol}}}
	}
	for _, tc := range []struct {
		name  string
		pol   *pb.RestartPolicy
		tasks []*pb.Task
		want  string // "" waits on
	}{
		{"one failure, unlimited", nil, []*pb.Task{failed("a", 1, "x")}, ""},
		{"same error thrice", nil, []*pb.Task{failed("a", 1, "x"), failed("b", 1, "x"), failed("c", 1, "x")}, "task web.1 failed 3 times in a row with: x"},
		{"different errors", nil, []*pb.Task{failed("a", 1, "x"), failed("b", 1, "y"), failed("c", 1, "x")}, ""},
		{"thrice over two slots", nil, []*pb.Task{failed("a", 1, "x"), failed("b", 2, "x"), failed("c", 1, "x")}, ""},
		{"a reported failure counts once", nil, []*pb.Task{failed("a", 1, "x"), failed("a", 1, "x"), failed("a", 1, "x")}, ""},
		{"within max attempts", &pb.RestartPolicy{MaxAttempts: 2}, []*pb.Task{failed("a", 2, "x"), failed("b", 2, "y")}, ""},
		{"over max attempts", &pb.RestartPolicy{MaxAttempts: 2}, []*pb.Task{failed("a", 2, "x"), failed("b", 2, "y"), failed("c", 2, "z")}, "task web.2 failed 3 times, the last with: z"},
		{"condition none", &pb.RestartPolicy{Condition: pb.RestartPolicy_CONDITION_NONE}, []*pb.Task{failed("a", 1, "x")}, "restart condition is none"},
		{"running is no failure", &pb.RestartPolicy{Condition: pb.RestartPolicy_CONDITION_NONE}, []*pb.Task{task("a", 1, pb.TaskState_TASK_STATE_RUNNING, pb.TaskState_TASK_STATE_RUNNING, "")}, ""},
	} {
		f := newFailures()
		for _, tk := range tc.tasks {
			f.note(tk)
		}
		why, ok := f.givenUp(svc(tc.pol))
		if ok != (tc.want != "") || !strings.Contains(why, tc.want) {
			t.Errorf("%s: givenUp = %q, %v; want %q", tc.name, why, ok, tc.want)
		}
	}
}

// TestUpdateEndsOnPermanentFailure: an update that goes on through
// failures (--update-failure-action continue) stops waiting, with exit 1,
// once its new tasks fail for good.
func TestUpdateEndsOnPermanentFailure(t *testing.T) {
	bundle := startManager(t)
	w := startFakeWorker(t, bundle, "w1", &pb.ResourceSet{NanoCpus: 2e9, MemoryBytes: 1 << 30})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const pullErr = "pull busybox:nope: image not found in the registry"
	go w.failImage(ctx, "busybox:nope", pullErr)
	if out, err := berth(t, "--tls-dir", bundle, "service", "create", "--name", "web", "--restart-delay", "0", "--timeout", "60s", "busybox"); err != nil {
		t.Fatalf("create: %v\n%s", err, out)
	}
	out, err := berth(t, "--tls-dir", bundle, "service", "update", "--image", "busybox:nope", "--update-failure-action", "continue", "--timeout", "60s", "web")
	if err == nil || !strings.Contains(err.Error(), "web did not converge: task web.1 failed 3 times in a row with: "+pullErr) {
		t.Errorf("update to a missing image: %v\n%s", err, out)
	}
}

// failImage runs w's tasks (reports them running), except those of image,
// which it fails with msg, until ctx ends.
func (w *fakeWorker) failImage(ctx context.Context, image, msg string) {
	reported := map[string]bool{}
	for ctx.Err() == nil {
		for _, tk := range w.assigned() {
			if reported[tk.GetId()] || tk.GetDesiredState() != pb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			st := &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING}
			if tk.GetSpec().GetContainer().GetImage() == image {
				st = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_FAILED, Err: msg}
			}
			// An error is the test ending: nothing to report to.
			reported[tk.GetId()] = w.reportStatus(tk.GetId(), st) == nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}
