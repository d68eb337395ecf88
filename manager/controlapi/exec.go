package controlapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// Exec runs a process in a running task's container, on the task's node,
// through that node's agent: input from the client goes to the process,
// its output comes back, then its exit code. A task that is not running
// is refused with FailedPrecondition and the task's state.
func (s *Server) Exec(stream pb.Control_ExecServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	start := first.GetStart()
	switch {
	case start == nil:
		return invalid("the first message must be the start: which task and what to run")
	case len(start.GetArgs()) == 0 || start.GetArgs()[0] == "":
		return invalid("args: give a command to run (berth exec TASK -- CMD [ARG...])")
	}
	leader, fctx, err := s.toLeader(ctx)
	if err != nil {
		return err
	}
	if leader != nil {
		return forwardExec(fctx, leader, first, stream)
	}
	if s.cfg.Agents == nil {
		return errNoAgents
	}
	task, err := s.execTarget(ctx, start.GetTask())
	if err != nil {
		return err
	}
	at := proto.Clone(start).(*pb.ExecStart)
	at.Task = task.GetId()
	agent, end, err := s.cfg.Agents.ExecTask(ctx, task.GetNodeId(), at)
	if err != nil {
		return err
	}
	defer end()
	started := &pb.ExecOutput{Kind: &pb.ExecOutput_Started{Started: &pb.ExecStarted{TaskId: task.GetId(), NodeId: task.GetNodeId()}}}
	if err := stream.Send(started); err != nil {
		return err
	}
	// The input copier ends when the client's stream does, at the latest
	// when this handler returns.
	go copyInput(stream, agent)
	return copyOutput(agent, stream, task.GetNodeId())
}

// execTarget resolves a task (ID or prefix), or a service's running task
// of the lowest slot, and checks that it runs.
func (s *Server) execTarget(ctx context.Context, ref string) (*pb.Task, error) {
	var task *pb.Task
	err := s.view(ctx, func(tx store.ReadTx) error {
		t, err := resolve("task", ref, tx.GetTask, tx.FindTasks)
		if status.Code(err) != codes.NotFound {
			task = t
			return firstErr(err, notServiceTask(t))
		}
		svc, serr := resolve("service", ref, tx.GetService, tx.FindServices)
		if serr != nil {
			if status.Code(serr) == codes.NotFound {
				return status.Errorf(codes.NotFound, "no task or service %q", ref)
			}
			return serr
		}
		task, err = runningTask(tx, svc)
		return err
	})
	if err != nil {
		return nil, err
	}
	if st := task.GetStatus(); st.GetState() != pb.TaskState_TASK_STATE_RUNNING || task.GetDesiredState() != pb.TaskState_TASK_STATE_RUNNING {
		return nil, status.Errorf(codes.FailedPrecondition, "task %s is not running: %s", task.GetId(), describeState(task))
	}
	return task, nil
}

// runningTask is the service's running task of the lowest slot.
func runningTask(tx store.ReadTx, svc *pb.Service) (*pb.Task, error) {
	tasks, err := tx.FindTasks(store.ByServiceID(svc.GetId()))
	if err != nil {
		return nil, err
	}
	tasks = slices.DeleteFunc(tasks, func(t *pb.Task) bool {
		return t.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING || t.GetDesiredState() != pb.TaskState_TASK_STATE_RUNNING
	})
	if len(tasks) == 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "service %s has no running task (see berth service ps %s)",
			svc.GetSpec().GetAnnotations().GetName(), svc.GetSpec().GetAnnotations().GetName())
	}
	slices.SortFunc(tasks, func(a, b *pb.Task) int { return int(a.GetSlot()) - int(b.GetSlot()) })
	return tasks[0], nil
}

// describeState says what a task is doing instead of running.
func describeState(t *pb.Task) string {
	st := t.GetStatus()
	s := "it is " + lowerState(st.GetState())
	if t.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING && st.GetState() <= pb.TaskState_TASK_STATE_RUNNING {
		s += ", being stopped (desired " + lowerState(t.GetDesiredState()) + ")"
	}
	if e := st.GetErr(); e != "" {
		s += ": " + e
	} else if m := st.GetMessage(); m != "" {
		s += " (" + m + ")"
	}
	return s
}

func lowerState(s pb.TaskState) string {
	name := s.String()
	if len(name) > len("TASK_STATE_") {
		name = name[len("TASK_STATE_"):]
	}
	b := []byte(name)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// copyInput passes the client's input on; the end of the client's stream
// closes the process's input.
func copyInput(from pb.Control_ExecServer, to pb.Dispatcher_ExecServer) {
	for {
		in, err := from.Recv()
		if err != nil {
			_ = to.Send(&pb.ExecInput{Kind: &pb.ExecInput_CloseStdin{CloseStdin: true}})
			return
		}
		if in.GetStart() != nil {
			continue
		}
		if err := to.Send(in); err != nil {
			return
		}
	}
}

// copyOutput passes the agent's output on until the exit code.
func copyOutput(from pb.Dispatcher_ExecServer, to pb.Control_ExecServer, node string) error {
	for {
		out, err := from.Recv()
		if err != nil {
			if st, ok := status.FromError(err); ok && st.Code() != codes.Unknown {
				return err
			}
			return status.Errorf(codes.Unavailable, "lost the process on node %s: %v", node, err)
		}
		if e := out.GetError(); e != nil {
			return status.Error(codes.Code(e.GetCode()), e.GetMessage())
		}
		if out.GetRequestId() != "" {
			continue
		}
		if err := to.Send(out); err != nil {
			return err
		}
		if _, ok := out.GetKind().(*pb.ExecOutput_ExitCode); ok {
			return nil
		}
	}
}

// forwardExec relays an exec through the leader.
func forwardExec(ctx context.Context, c pb.ControlClient, first *pb.ExecInput, stream pb.Control_ExecServer) error {
	up, err := c.Exec(ctx)
	if err != nil {
		return err
	}
	if err := up.Send(first); err != nil {
		return fmt.Errorf("pass the exec on to the leader: %w", err)
	}
	go func() {
		for {
			in, err := stream.Recv()
			if err != nil {
				_ = up.CloseSend()
				return
			}
			if up.Send(in) != nil {
				return
			}
		}
	}()
	for {
		out, err := up.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(out); err != nil {
			return err
		}
	}
}
