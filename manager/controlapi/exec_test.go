package controlapi

import (
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// pipeStream is one end of an in-memory bidirectional stream.
type pipeStream[In, Out any] struct {
	grpc.ServerStream
	ctx  context.Context
	in   chan *In
	out  chan *Out
	done chan struct{} // closed when the peer ends (Recv returns io.EOF)
}

func (p *pipeStream[In, Out]) Context() context.Context { return p.ctx }
func (p *pipeStream[In, Out]) Send(m *Out) error        { p.out <- m; return nil }
func (p *pipeStream[In, Out]) Recv() (*In, error) {
	select {
	case m := <-p.in:
		return m, nil
	case <-p.done:
		return nil, io.EOF
	case <-p.ctx.Done():
		return nil, p.ctx.Err()
	}
}

// ExecTask of the fake agent echoes stdin as stdout and exits 7 when its
// input closes; a command "fail" cannot start.
func (f *fakeAgents) ExecTask(ctx context.Context, node string, start *pb.ExecStart) (pb.Dispatcher_ExecServer, func(), error) {
	f.mu.Lock()
	f.execs = append(f.execs, proto.Clone(start).(*pb.ExecStart))
	f.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	s := &pipeStream[pb.ExecOutput, pb.ExecInput]{ctx: ctx, in: make(chan *pb.ExecOutput, 10), out: make(chan *pb.ExecInput, 10), done: make(chan struct{})}
	go func() {
		if start.GetArgs()[0] == "fail" {
			s.in <- &pb.ExecOutput{Kind: &pb.ExecOutput_Error{Error: &pb.ExecError{Code: int32(codes.NotFound), Message: "fail: command not found in the image"}}}
			return
		}
		for {
			select {
			case in := <-s.out:
				if in.GetCloseStdin() {
					s.in <- &pb.ExecOutput{Kind: &pb.ExecOutput_ExitCode{ExitCode: 7}}
					return
				}
				s.in <- &pb.ExecOutput{Kind: &pb.ExecOutput_Stdout{Stdout: in.GetStdin()}}
			case <-ctx.Done():
				return
			}
		}
	}()
	return s, cancel, nil
}

func runExec(s *Server, first *pb.ExecInput) (*pipeStream[pb.ExecInput, pb.ExecOutput], chan error) {
	cs := &pipeStream[pb.ExecInput, pb.ExecOutput]{ctx: context.Background(), in: make(chan *pb.ExecInput, 10), out: make(chan *pb.ExecOutput, 10), done: make(chan struct{})}
	cs.in <- first
	done := make(chan error, 1)
	go func() { done <- s.Exec(cs) }()
	return cs, done
}

func start(task string, args ...string) *pb.ExecInput {
	return &pb.ExecInput{Kind: &pb.ExecInput_Start{Start: &pb.ExecStart{Task: task, Args: args, Stdin: true}}}
}

func TestExecRelaysInputOutputAndExitCode(t *testing.T) {
	s, st, f, _ := logsSetup(t)
	failed := logTask("task9", "", "n2", 4, pb.TaskState_TASK_STATE_FAILED)
	failed.Status.Err = "exit code 1"
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.CreateTask(failed) }); err != nil {
		t.Fatal(err)
	}
	cs, done := runExec(s, start("web", "cat"))
	first := <-cs.out
	if first.GetStarted().GetTaskId() != "task1" || first.GetStarted().GetNodeId() != "n1" {
		t.Fatalf("first answer %v, want started on task1 (slot 1) at n1", first)
	}
	cs.in <- &pb.ExecInput{Kind: &pb.ExecInput_Stdin{Stdin: []byte("hi")}}
	if out := <-cs.out; string(out.GetStdout()) != "hi" {
		t.Fatalf("echo %v", out)
	}
	close(cs.done) // the client ends its input
	if out := <-cs.out; out.GetKind() == nil || out.GetExitCode() != 7 {
		t.Fatalf("last %v, want exit code 7", out)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if f.execs[0].GetTask() != "task1" {
		t.Errorf("the agent was asked for %q, want the task ID", f.execs[0].GetTask())
	}

	for _, tc := range []struct {
		first *pb.ExecInput
		code  codes.Code
		want  string
	}{
		{start("task9", "sh"), codes.FailedPrecondition, "task task9 is not running: it is failed: exit code 1"},
		{start("nothing", "sh"), codes.NotFound, `no task or service "nothing"`},
		{start("task1"), codes.InvalidArgument, "args: give a command"},
		{&pb.ExecInput{Kind: &pb.ExecInput_Stdin{Stdin: []byte("x")}}, codes.InvalidArgument, "first message must be the start"},
		{start("task1", "fail"), codes.NotFound, "fail: command not found"},
	} {
		_, done := runExec(s, tc.first)
		select {
		case err := <-done:
			if code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("exec %v: %v, want %v with %q", tc.first, err, tc.code, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("exec %v hangs", tc.first)
		}
	}
}
