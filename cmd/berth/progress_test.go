package main

import (
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

func task(id string, slot uint64, desired, state pb.TaskState, errMsg string) *pb.Task {
	return &pb.Task{Id: id, ServiceId: "svc", Slot: slot, DesiredState: desired, Status: &pb.TaskStatus{State: state, Err: errMsg}}
}

func TestProgressCountsAndExplains(t *testing.T) {
	const run, pend, shut, failed = pb.TaskState_TASK_STATE_RUNNING, pb.TaskState_TASK_STATE_PENDING, pb.TaskState_TASK_STATE_SHUTDOWN, pb.TaskState_TASK_STATE_FAILED
	svc := &pb.Service{Id: "svc", Spec: &pb.ServiceSpec{Mode: pb.ServiceMode_SERVICE_MODE_REPLICATED, Replicas: proto.Int64(3)}}
	p := newProgress(svc)
	p.apply(&pb.WatchTasksResponse{Tasks: []*pb.Task{
		task("a", 1, run, run, ""),
		task("b", 2, run, pend, "no suitable node (insufficient memory on 3 nodes)"),
		task("c", 3, shut, failed, "exit status 1"),
		task("d", 3, run, run, ""),
	}})
	running, want, problems := p.state()
	if running != 2 || want != 3 {
		t.Fatalf("state = %d of %d, want 2 of 3", running, want)
	}
	if len(problems) != 2 || problems[0] != "pending: no suitable node (insufficient memory on 3 nodes)" || problems[1] != "task svc.3 failed: exit status 1" {
		t.Fatalf("problems = %q", problems)
	}
	if p.converged() {
		t.Fatal("converged with a pending task")
	}
	p.apply(&pb.WatchTasksResponse{Tasks: []*pb.Task{task("b", 2, run, run, "")}})
	if !p.converged() {
		t.Fatal("not converged with 3 of 3 running")
	}
	// A fourth live task (scale-down not done yet) is not converged.
	p.apply(&pb.WatchTasksResponse{Tasks: []*pb.Task{task("e", 4, run, run, "")}})
	if p.converged() {
		t.Fatal("converged with 4 live tasks for 3 replicas")
	}
	p.apply(&pb.WatchTasksResponse{Removed: []string{"e"}})
	if !p.converged() {
		t.Fatal("not converged after the extra task went away")
	}
}

func TestProgressGlobalWaitsForTasks(t *testing.T) {
	svc := &pb.Service{Id: "svc", Spec: &pb.ServiceSpec{Mode: pb.ServiceMode_SERVICE_MODE_GLOBAL}}
	p := newProgress(svc)
	if p.converged() {
		t.Fatal("a global service with no tasks yet counts as converged")
	}
	p.apply(&pb.WatchTasksResponse{Tasks: []*pb.Task{task("a", 0, pb.TaskState_TASK_STATE_RUNNING, pb.TaskState_TASK_STATE_RUNNING, "")}})
	if !p.converged() {
		t.Fatal("one node, one running task: not converged")
	}
}
