package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	"google.golang.org/grpc"

	pb "berth/proto/berth/v1"
)

// progress is what `service create` and `service scale` show while a
// service converges: how many of its tasks run, and why the others do not.
type progress struct {
	mode     pb.ServiceMode
	replicas int64
	tasks    map[string]*pb.Task
}

func newProgress(svc *pb.Service) *progress {
	return &progress{mode: svc.GetSpec().GetMode(), replicas: svc.GetSpec().GetReplicas(), tasks: map[string]*pb.Task{}}
}

func (p *progress) apply(r *pb.WatchTasksResponse) {
	for _, t := range r.GetTasks() {
		p.tasks[t.GetId()] = t
	}
	for _, id := range r.GetRemoved() {
		delete(p.tasks, id)
	}
}

// state sums up the tasks that should run: running, total wanted, and
// one line per problem (a pending task's reason, a failed task's error).
func (p *progress) state() (running, want int, problems []string) {
	live := 0
	seen := map[string]bool{}
	for _, t := range p.tasks {
		st := t.GetStatus().GetState()
		if t.GetDesiredState() <= pb.TaskState_TASK_STATE_RUNNING {
			live++
			if st == pb.TaskState_TASK_STATE_RUNNING {
				running++
			}
			if st == pb.TaskState_TASK_STATE_PENDING && t.GetStatus().GetErr() != "" {
				seen["pending: "+t.GetStatus().GetErr()] = true
			}
		}
		if st == pb.TaskState_TASK_STATE_FAILED || st == pb.TaskState_TASK_STATE_REJECTED {
			if msg := t.GetStatus().GetErr(); msg != "" {
				seen[fmt.Sprintf("task %s.%d %s: %s", shortID(t.GetServiceId()), t.GetSlot(), lowerEnum(st.String(), "TASK_STATE_"), msg)] = true
			}
		}
	}
	want = live
	if p.mode == pb.ServiceMode_SERVICE_MODE_REPLICATED {
		want = int(p.replicas)
	}
	for s := range seen {
		problems = append(problems, s)
	}
	sort.Strings(problems)
	return running, want, problems
}

// converged: every wanted task runs and nothing more is live.
func (p *progress) converged() bool {
	running, want, _ := p.state()
	live := 0
	for _, t := range p.tasks {
		if t.GetDesiredState() <= pb.TaskState_TASK_STATE_RUNNING {
			live++
		}
	}
	if p.mode == pb.ServiceMode_SERVICE_MODE_GLOBAL && want == 0 {
		return false // no eligible node has a task yet
	}
	return running == want && live == want
}

// waitConverged follows the service's tasks and prints progress lines to
// w until it converges, its tasks fail for good (see failures.givenUp),
// or ctx ends. Lines are printed when they change,
// so the output reads well in a terminal and in a log alike.
func waitConverged(ctx context.Context, c pb.ControlClient, svc *pb.Service, w io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchTasks(ctx, &pb.WatchTasksRequest{ServiceIds: []string{svc.GetId()}}, grpc.WaitForReady(false))
	if err != nil {
		return err
	}
	p := newProgress(svc)
	fails := newFailures()
	last := ""
	printed := map[string]bool{}
	for {
		r, err := stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("stopped waiting for %s to converge: %w (it keeps converging; see `berth service ps %s`)", svc.GetSpec().GetAnnotations().GetName(), context.Cause(ctx), svc.GetSpec().GetAnnotations().GetName())
			}
			return err
		}
		p.apply(r)
		for _, t := range r.GetTasks() {
			fails.note(t)
		}
		running, want, problems := p.state()
		line := fmt.Sprintf("overall progress: %d out of %d tasks running", running, want)
		if line != last {
			fmt.Fprintln(w, line)
			last = line
		}
		for _, pr := range problems {
			if !printed[pr] {
				fmt.Fprintln(w, "  "+pr)
				printed[pr] = true
			}
		}
		if p.converged() {
			fmt.Fprintln(w, "verify: service converged")
			return nil
		}
		if why, ok := fails.givenUp(svc); ok {
			return fmt.Errorf("%s did not converge: %s", svc.GetSpec().GetAnnotations().GetName(), why)
		}
	}
}

// waitFlagHelp is the help of --detach on commands that wait.
var waitFlagHelp = strings.TrimSpace(`return at once instead of waiting for the service to converge`)
