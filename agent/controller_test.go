package agent

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"berth/agent/runtime"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

func task(id string, desired pb.TaskState) *pb.Task {
	return &pb.Task{
		Id: id, ServiceId: "svc", DesiredState: desired,
		Spec:   &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "reg/busybox", Command: []string{"sleep", "1000"}}},
		Status: &pb.TaskStatus{State: pb.TaskState_TASK_STATE_ASSIGNED},
	}
}

func states(sts []*pb.TaskStatus) []pb.TaskState {
	var out []pb.TaskState
	for _, s := range sts {
		if len(out) == 0 || out[len(out)-1] != s.GetState() {
			out = append(out, s.GetState())
		}
	}
	return out
}

func TestControllerStartsTask(t *testing.T) {
	r := newRig(t)
	r.assign(t, true, task("t1", pb.TaskState_TASK_STATE_RUNNING))
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	want := []pb.TaskState{pb.TaskState_TASK_STATE_PREPARING, pb.TaskState_TASK_STATE_STARTING, pb.TaskState_TASK_STATE_RUNNING}
	if got := states(r.rec.all("t1")); !equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	if st.GetContainer().GetContainerId() != "t1" || st.GetContainer().GetPid() == 0 || st.GetContainer().GetStartedAt() == nil {
		t.Fatalf("running status lacks container details: %v", st.GetContainer())
	}
	var pulling bool
	for _, s := range r.rec.all("t1") {
		pulling = pulling || s.GetMessage() == "pulling 3.0/5.0 MB"
	}
	if !pulling {
		t.Errorf("no pull progress message among %v", stateList{r, "t1"})
	}
	if spec := r.exec.get("t1").spec; strings.Join(spec.Args, " ") != "sleep 1000" {
		t.Errorf("container args %q", spec.Args)
	}
}

func equal(a, b []pb.TaskState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestControllerExit(t *testing.T) {
	for _, tc := range []struct {
		name  string
		exit  runtime.ExitStatus
		state pb.TaskState
		err   string
	}{
		{"zero", runtime.ExitStatus{Code: 0, Reason: runtime.ReasonCompleted}, pb.TaskState_TASK_STATE_COMPLETE, ""},
		{"three", runtime.ExitStatus{Code: 3, Reason: runtime.ReasonError}, pb.TaskState_TASK_STATE_FAILED, "task: non-zero exit (3)"},
		{"oom", runtime.ExitStatus{Code: 137, OOMKilled: true, Reason: runtime.ReasonOOMKilled}, pb.TaskState_TASK_STATE_FAILED, "task: non-zero exit (137): OOMKilled"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t)
			r.assign(t, true, task("t1", pb.TaskState_TASK_STATE_RUNNING))
			r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
			r.exec.get("t1").end(tc.exit)
			st := r.waitState(t, "t1", tc.state)
			if st.GetErr() != tc.err {
				t.Errorf("err %q, want %q", st.GetErr(), tc.err)
			}
			if st.GetContainer().GetExitCode() != int32(tc.exit.Code) || st.GetContainer().GetFinishedAt() == nil {
				t.Errorf("container status %v", st.GetContainer())
			}
		})
	}
}

func TestControllerShutdownAndRemove(t *testing.T) {
	r := newRig(t)
	tk := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Spec.Container.StopGracePeriod = durationpb.New(3 * time.Second)
	r.assign(t, true, tk)
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	ctr := r.exec.get("t1")

	tk = task("t1", pb.TaskState_TASK_STATE_SHUTDOWN)
	tk.Spec.Container.StopGracePeriod = durationpb.New(3 * time.Second)
	r.assign(t, false, tk)
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_SHUTDOWN)
	if g := ctr.stopGrace(); g != 3*time.Second {
		t.Errorf("stopped with grace %s, want the spec's 3s", g)
	}
	if r.exec.wasRemoved("t1") {
		t.Errorf("container removed at shutdown; it should stay until the task is removed")
	}
	r.removeTask(t, "t1")
	await.True(t, 5*time.Second, func() bool { return r.exec.wasRemoved("t1") && len(r.w.running()) == 0 },
		"container removed and controller ended after the task left the assignment")
}

func TestControllerShutdownWhilePulling(t *testing.T) {
	r := newRig(t)
	r.exec.pullGate = make(chan struct{})
	r.assign(t, true, task("t1", pb.TaskState_TASK_STATE_RUNNING))
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_PREPARING)
	r.assign(t, false, task("t1", pb.TaskState_TASK_STATE_SHUTDOWN))
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_SHUTDOWN)
	if n := r.exec.runCount(); n != 0 {
		t.Fatalf("%d containers started for a task shut down while pulling", n)
	}
}

func TestControllerRejectsAndFails(t *testing.T) {
	r := newRig(t)
	r.exec.pullErr = errors.New("manifest unknown: reg/busybox:nope not found")
	r.assign(t, true, task("t1", pb.TaskState_TASK_STATE_RUNNING))
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_REJECTED)
	if !strings.Contains(st.GetErr(), "manifest unknown") {
		t.Errorf("err %q lacks the registry's message", st.GetErr())
	}

	r2 := newRig(t)
	r2.exec.runErr = runtime.ErrCommandNotFound
	r2.assign(t, true, task("t2", pb.TaskState_TASK_STATE_RUNNING))
	st = r2.waitState(t, "t2", pb.TaskState_TASK_STATE_FAILED)
	if !strings.Contains(st.GetErr(), "starting container failed: command not found") {
		t.Errorf("err %q", st.GetErr())
	}
}

func TestControllerAdoptsRunningContainer(t *testing.T) {
	r := newRig(t)
	ctr := r.exec.add("t1")
	tk := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING, Container: &pb.ContainerStatus{ContainerId: "t1"}}
	r.assign(t, true, tk)
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	if st.GetContainer().GetPid() != int64(ctr.pid) {
		t.Errorf("pid %d, want the adopted %d", st.GetContainer().GetPid(), ctr.pid)
	}
	if n := r.exec.runCount(); n != 0 {
		t.Fatalf("adopting started %d new containers", n)
	}
	ctr.end(runtime.ExitStatus{Code: 0, Reason: runtime.ReasonCompleted})
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_COMPLETE)
}

func TestControllerLostContainer(t *testing.T) {
	r := newRig(t)
	tk := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING}
	r.assign(t, true, tk)
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_FAILED)
	if !strings.Contains(st.GetErr(), "no longer exists") {
		t.Errorf("err %q", st.GetErr())
	}
}

func TestControllerUnhealthy(t *testing.T) {
	r := newRig(t)
	r.exec.execCode = 1
	tk := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Spec.Container.Healthcheck = &pb.HealthCheck{Test: []string{"CMD", "false"}, Interval: durationpb.New(10 * time.Millisecond), Retries: 2}
	r.assign(t, true, tk)
	st := r.waitState(t, "t1", pb.TaskState_TASK_STATE_FAILED)
	if st.GetErr() != "unhealthy container" || st.GetContainer().GetHealth() != pb.ContainerStatus_HEALTH_UNHEALTHY {
		t.Fatalf("status %v", st)
	}
	if first := r.rec.all("t1"); first[len(first)-2].GetContainer().GetHealth() != pb.ContainerStatus_HEALTH_STARTING {
		t.Errorf("running status before failing should say health starting: %v", stateList{r, "t1"})
	}
}

func TestControllerHealthy(t *testing.T) {
	r := newRig(t)
	tk := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Spec.Container.Healthcheck = &pb.HealthCheck{Test: []string{"CMD-SHELL", "true"}, Interval: durationpb.New(10 * time.Millisecond)}
	r.assign(t, true, tk)
	await.True(t, 5*time.Second, func() bool {
		return r.rec.last("t1").GetContainer().GetHealth() == pb.ContainerStatus_HEALTH_HEALTHY
	}, "health healthy: %v", stateList{r, "t1"})
}

func TestHealthConfigDefaults(t *testing.T) {
	hc := healthConfig(&pb.HealthCheck{Test: []string{"CMD-SHELL", "wget -q localhost"}})
	if hc.interval != 30*time.Second || hc.timeout != 30*time.Second || hc.retries != 3 || hc.startPeriod != 0 {
		t.Errorf("defaults %+v", hc)
	}
	if strings.Join(hc.args, "|") != "/bin/sh|-c|wget -q localhost" {
		t.Errorf("args %q", hc.args)
	}
	if healthConfig(&pb.HealthCheck{Test: []string{"NONE"}}) != nil || healthConfig(nil) != nil {
		t.Error("NONE or no test should mean no health check")
	}
}

func TestWorkerFullSetRemovesAbsentTasksAndOrphans(t *testing.T) {
	r := newRig(t)
	r.exec.add("orphan")
	r.assign(t, true, task("t1", pb.TaskState_TASK_STATE_RUNNING), task("t2", pb.TaskState_TASK_STATE_RUNNING))
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	r.waitState(t, "t2", pb.TaskState_TASK_STATE_RUNNING)
	await.True(t, 5*time.Second, func() bool { return r.exec.wasRemoved("orphan") }, "orphan container removed")

	r.assign(t, true, task("t2", pb.TaskState_TASK_STATE_RUNNING))
	await.True(t, 5*time.Second, func() bool { return r.exec.wasRemoved("t1") }, "t1 removed when absent from a full set")
	if r.exec.wasRemoved("t2") || r.exec.runCount() != 2 {
		t.Fatalf("t2 must keep running untouched (runs %d)", r.exec.runCount())
	}
}

// TestControllerDrainsTasksWithEndpoints: a running task on a network is
// signalled only after the drain (other nodes are dropping it from their
// VIP maps meanwhile); a task without endpoints is stopped at once.
func TestControllerDrainsTasksWithEndpoints(t *testing.T) {
	paused := make(chan time.Duration, 1)
	release := make(chan struct{})
	var r *rig
	r = newRigWith(t, func(env *taskEnv) {
		env.drain = 5 * time.Second
		env.pause = func(_ context.Context, d time.Duration) {
			if r.exec.get("t1").stopGrace() != 0 {
				t.Errorf("the container was stopped before the drain")
			}
			paused <- d
			<-release
		}
	})
	onNet := task("t1", pb.TaskState_TASK_STATE_RUNNING)
	onNet.Networks = []*pb.NetworkAttachmentStatus{{NetworkId: "n1", Addresses: []string{"10.0.0.5/24"}}}
	plain := task("t2", pb.TaskState_TASK_STATE_RUNNING)
	r.assign(t, true, onNet, plain)
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	r.waitState(t, "t2", pb.TaskState_TASK_STATE_RUNNING)

	plain = task("t2", pb.TaskState_TASK_STATE_SHUTDOWN)
	r.assign(t, false, plain)
	r.waitState(t, "t2", pb.TaskState_TASK_STATE_SHUTDOWN) // no drain: pause would block it

	onNet = task("t1", pb.TaskState_TASK_STATE_SHUTDOWN)
	onNet.Networks = []*pb.NetworkAttachmentStatus{{NetworkId: "n1", Addresses: []string{"10.0.0.5/24"}}}
	r.assign(t, false, onNet)
	select {
	case d := <-paused:
		if d != 5*time.Second {
			t.Errorf("drained %s, want the env's 5s", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a task on a network was stopped without a drain")
	}
	close(release)
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_SHUTDOWN)
}
