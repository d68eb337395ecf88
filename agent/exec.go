package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"

	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// containers finds the container of a task this node runs.
type containers interface {
	// Container returns the container of an assigned task.
	Container(taskID string) (Container, bool)
}

// assignedContainers serves only the containers of tasks assigned to this
// node: an agent execs into nothing else, whatever a manager asks.
type assignedContainers struct {
	w    *worker
	exec Executor
}

func (a assignedContainers) Container(taskID string) (Container, bool) {
	a.w.mu.Lock()
	_, ok := a.w.tasks[taskID]
	a.w.mu.Unlock()
	if !ok {
		return nil, false
	}
	return a.exec.Container(taskID)
}

// serveExec runs a process in a task's container for a manager's Exec
// request, on a Dispatcher.Exec stream: input from the manager goes to
// the process, its output back, the exit code last. The process is killed
// when the stream ends first.
func (r *requests) serveExec(ctx context.Context, id string, start *pb.ExecStart) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.client.Exec(ctx)
	if err != nil {
		return err
	}
	out := &execOut{stream: stream}
	if err := out.send(&pb.ExecOutput{Kind: &pb.ExecOutput_RequestId{RequestId: id}}); err != nil {
		return err
	}
	in := newExecIn(start)
	readDone := make(chan struct{})
	go func() { defer close(readDone); in.read(stream, cancel) }()
	c, ok := r.containers.Container(start.GetTask())
	if !ok {
		in.close()
		return out.last(execError(codes.NotFound, fmt.Sprintf("task %s has no container on this node", start.GetTask())), readDone)
	}
	code, err := c.Exec(ctx, runtime.ExecSpec{
		Args: start.GetArgs(), Env: start.GetEnv(), User: start.GetUser(), Cwd: start.GetWorkdir(), TTY: start.GetTty(),
		Stdin: in.stdin(), Stdout: out.writer(false), Stderr: out.writer(true),
		Size: windowSize(start.GetSize()), Resize: in.resize,
	})
	in.close()
	switch {
	case err != nil && ctx.Err() != nil:
		return nil // the manager went away; the process is killed
	case errors.Is(err, runtime.ErrCommandNotFound):
		return out.last(execError(codes.NotFound, err.Error()), readDone)
	case errors.Is(err, runtime.ErrPermissionDenied):
		return out.last(execError(codes.PermissionDenied, err.Error()), readDone)
	case errors.Is(err, runtime.ErrNotRunning):
		return out.last(execError(codes.FailedPrecondition, err.Error()), readDone)
	case err != nil:
		return out.last(execError(codes.Internal, err.Error()), readDone)
	}
	return out.last(&pb.ExecOutput{Kind: &pb.ExecOutput_ExitCode{ExitCode: int32(code)}}, readDone)
}

func execError(code codes.Code, msg string) *pb.ExecOutput {
	return &pb.ExecOutput{Kind: &pb.ExecOutput_Error{Error: &pb.ExecError{Code: int32(code), Message: msg}}}
}

// lastWait bounds the wait for the manager to end an exec's stream after
// its last message.
const lastWait = 10 * time.Second

// last sends the final message and waits until the manager has ended the
// stream (readDone): cancelling it sooner could lose the message.
func (o *execOut) last(m *pb.ExecOutput, readDone <-chan struct{}) error {
	err := o.send(m)
	if err == nil {
		err = o.stream.CloseSend()
	}
	select {
	case <-readDone:
	case <-time.After(lastWait):
	}
	return err
}

func windowSize(s *pb.WindowSize) runtime.WindowSize {
	return runtime.WindowSize{Rows: uint16(min(s.GetRows(), 0xffff)), Cols: uint16(min(s.GetCols(), 0xffff))}
}

// execOut sends output on the stream; stdout and stderr are copied by two
// goroutines, so sends are serialised.
type execOut struct {
	mu     sync.Mutex
	stream pb.Dispatcher_ExecClient
}

func (o *execOut) send(m *pb.ExecOutput) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.stream.Send(m)
}

func (o *execOut) writer(stderr bool) io.Writer {
	return writerFunc(func(p []byte) (int, error) {
		b := append([]byte(nil), p...)
		m := &pb.ExecOutput{Kind: &pb.ExecOutput_Stdout{Stdout: b}}
		if stderr {
			m = &pb.ExecOutput{Kind: &pb.ExecOutput_Stderr{Stderr: b}}
		}
		if err := o.send(m); err != nil {
			return 0, err
		}
		return len(p), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// execIn feeds the manager's input to the process: stdin through a pipe,
// terminal sizes through a channel.
type execIn struct {
	pr     *io.PipeReader
	pw     *io.PipeWriter
	resize chan runtime.WindowSize
	done   chan struct{}
	once   sync.Once
}

func newExecIn(start *pb.ExecStart) *execIn {
	in := &execIn{done: make(chan struct{})}
	if start.GetTty() {
		in.resize = make(chan runtime.WindowSize)
	}
	if start.GetStdin() {
		in.pr, in.pw = io.Pipe()
	}
	return in
}

// stdin is the process's input, nil when the client sends none.
func (in *execIn) stdin() io.Reader {
	if in.pr == nil {
		return nil
	}
	return in.pr
}

// read takes input until the stream ends; an end before the process's
// (the manager or client went away) cancels the exec.
func (in *execIn) read(stream pb.Dispatcher_ExecClient, cancel func()) {
	for {
		m, err := stream.Recv()
		if err != nil {
			cancel()
			in.closeStdin()
			return
		}
		switch k := m.GetKind().(type) {
		case *pb.ExecInput_Stdin:
			if in.pw != nil {
				_, _ = in.pw.Write(k.Stdin)
			}
		case *pb.ExecInput_CloseStdin:
			in.closeStdin()
		case *pb.ExecInput_Resize:
			if in.resize == nil {
				continue // no terminal to size
			}
			select {
			case in.resize <- windowSize(k.Resize):
			case <-in.done:
			}
		}
	}
}

func (in *execIn) closeStdin() {
	if in.pw != nil {
		in.pw.Close()
	}
}

// close ends the input once the process has exited.
func (in *execIn) close() {
	in.once.Do(func() { close(in.done) })
	in.closeStdin()
	if in.pr != nil {
		in.pr.Close()
	}
}
