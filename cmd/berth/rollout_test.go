package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

func rolloutTask(id string, slot uint64, image string, state pb.TaskState) *pb.Task {
	return &pb.Task{Id: id, ServiceId: "svc", Slot: slot, DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Spec:   &pb.TaskSpec{Container: &pb.ContainerSpec{Image: image}},
		Status: &pb.TaskStatus{State: state}}
}

// TestRolloutView follows an update of 3 slots as the CLI shows it: the
// overall line, a line per slot as it changes, then the verdict.
func TestRolloutView(t *testing.T) {
	started := &pb.Service{Id: "svc", SpecVersion: 2, Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "web"},
		Replicas: proto.Int64(3), Task: &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "app:v2"}}},
		UpdateStatus: &pb.UpdateStatus{State: pb.UpdateStatus_STATE_UPDATING}}
	v := &rolloutView{svc: started, tasks: map[string]*pb.Task{}, lines: map[string]string{}}
	for i, img := range []string{"app:v1", "app:v1", "app:v1"} {
		t := rolloutTask("old"+string(rune('1'+i)), uint64(i+1), img, pb.TaskState_TASK_STATE_RUNNING)
		v.tasks[t.Id] = t
	}
	v.tasks["old1"].DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN
	v.tasks["new1"] = rolloutTask("new1", 1, "app:v2", pb.TaskState_TASK_STATE_RUNNING)
	var out bytes.Buffer
	var last, lastStatus string
	v.print(&out, &last)
	want := "overall progress: 1 out of 3 tasks\n1/3: running\n2/3: running (previous spec)\n3/3: running (previous spec)\n"
	if out.String() != want {
		t.Fatalf("progress:\n%s\nwant:\n%s", out.String(), want)
	}
	if end, _ := v.finished(started, &out, &lastStatus); end {
		t.Fatal("finished while updating")
	}

	// Paused: the command ends with the reason.
	v.svc = proto.Clone(started).(*pb.Service)
	v.svc.UpdateStatus = &pb.UpdateStatus{State: pb.UpdateStatus_STATE_PAUSED, Message: "update paused due to failure or early termination of task new2: exit 1"}
	end, err := v.finished(started, &out, &lastStatus)
	if !end || err == nil || !strings.Contains(err.Error(), "task new2: exit 1") {
		t.Fatalf("paused: end=%v err=%v", end, err)
	}

	// Rolled back by itself: converged on v1, but the command fails.
	v.svc.Spec.Task.Container.Image = "app:v1"
	v.svc.UpdateStatus = &pb.UpdateStatus{State: pb.UpdateStatus_STATE_ROLLBACK_STARTED, Message: "update rolled back due to failure or early termination of task new1: exit 1"}
	out.Reset()
	v.finished(started, &out, &lastStatus)
	if !strings.Contains(out.String(), "rollback: update rolled back due to") {
		t.Fatalf("rollback start not shown: %q", out.String())
	}
	v.tasks["new1"].DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN
	v.tasks["back1"] = rolloutTask("back1", 1, "app:v1", pb.TaskState_TASK_STATE_RUNNING)
	v.svc.UpdateStatus = &pb.UpdateStatus{State: pb.UpdateStatus_STATE_ROLLBACK_COMPLETED, Message: "rollback completed"}
	out.Reset()
	end, err = v.finished(started, &out, &lastStatus)
	if !end || !errors.Is(err, errRolledBack) || !strings.Contains(out.String(), "verify: Service converged") {
		t.Fatalf("rolled back: end=%v err=%v out=%q", end, err, out.String())
	}
}

func TestUpdateStateColumn(t *testing.T) {
	if got := updateState(&pb.UpdateStatus{State: pb.UpdateStatus_STATE_ROLLBACK_PAUSED}); got != "rollback_paused" {
		t.Fatalf("updateState = %q", got)
	}
	if got := updateState(nil); got != "" {
		t.Fatalf("no status = %q", got)
	}
}

func TestHealthFlagsAndColumns(t *testing.T) {
	cmd := newServiceCreateCmd(&globalOpts{})
	if err := cmd.ParseFlags([]string{"--health-http", "8080/health", "--health-start-interval", "1s"}); err != nil {
		t.Fatal(err)
	}
	var f serviceFlags
	f.healthHTTP, _ = cmd.Flags().GetString("health-http")
	spec := &pb.ServiceSpec{}
	f.updOrder, f.rbFailure, f.rbOrder, f.endpointMode, f.restartCond, f.updFailure = "stop-first", "pause", "stop-first", "vip", "any", "pause"
	if err := f.apply(cmd.Flags(), spec, true); err != nil {
		t.Fatal(err)
	}
	h := spec.GetTask().GetContainer().GetHealthcheck()
	if h.GetHttpPort() != 8080 || h.GetHttpPath() != "/health" || len(h.GetTest()) != 0 || h.GetStartInterval().AsDuration().Seconds() != 1 {
		t.Fatalf("--health-http 8080/health: %v", h)
	}
	if _, _, err := httpProbeFlag("health"); err == nil || !strings.Contains(err.Error(), "PORT/PATH") {
		t.Fatalf("bad --health-http: %v", err)
	}
	tk := rolloutTask("t", 1, "app:v1", pb.TaskState_TASK_STATE_RUNNING)
	tk.Status.Container = &pb.ContainerStatus{Health: pb.ContainerStatus_HEALTH_STARTING, HealthOutput: "GET http://127.0.0.1:8080/health: 503 Service Unavailable: unhealthy\n"}
	if healthNote(tk) != " (health: starting)" || taskErr(tk) != "health check: GET http://127.0.0.1:8080/health: 503 Service Unavailable: unhealthy" {
		t.Fatalf("ps columns: %q %q", healthNote(tk), taskErr(tk))
	}
}
