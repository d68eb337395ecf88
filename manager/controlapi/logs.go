package controlapi

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// Agents reaches the agents through their sessions with this manager
// (the leader): the dispatcher.
type Agents interface {
	// TaskLogs sends a task's log lines, read on its node, to out until
	// the log ends or ctx ends; an error says why it cannot be read.
	TaskLogs(ctx context.Context, node string, req *pb.TaskLogsRequest, out chan<- *pb.LogMessage) error
	// ExecTask has the node's agent run start in a task's container and
	// returns the stream with it; end ends that stream.
	// It is the agent's stream: Send gives input, Recv takes output.
	ExecTask(ctx context.Context, node string, start *pb.ExecStart) (s pb.Dispatcher_ExecServer, end func(), err error)
}

// ServiceLogs streams the logs of a service's tasks (or of one task),
// merged as they arrive, each line labelled with its task, slot and node.
// A task whose log cannot be read (its node is down) gets one message
// with error set instead. With follow it goes on with new output, and
// with the tasks that start later, until the client leaves (or, for one
// task, until its container has exited).
func (s *Server) ServiceLogs(req *pb.ServiceLogsRequest, stream pb.Control_ServiceLogsServer) error {
	ctx := stream.Context()
	leader, fctx, err := s.toLeader(ctx)
	if err != nil {
		return err
	}
	if leader != nil {
		return forwardLogs(fctx, leader, req, stream)
	}
	if s.cfg.Agents == nil {
		return errNoAgents
	}
	if req.Tail != nil && req.GetTail() < 0 {
		return invalid("tail %d: give a number of lines, 0 or more (or leave it unset for all)", req.GetTail())
	}
	if err := s.view(ctx, func(store.ReadTx) error { return nil }); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r := &logRun{s: s, req: req, out: make(chan *pb.LogMessage, 256), slots: map[string]uint64{}}
	w, err := r.watch(ctx)
	if err != nil {
		return err
	}
	defer w.Close()
	return r.relay(ctx, w, stream)
}

// logRun is one ServiceLogs call: the tasks whose logs it reads and the
// lines they send.
type logRun struct {
	s       *Server
	req     *pb.ServiceLogsRequest
	service string // the service followed, or "" for one task
	task    string // the one task, when the target is a task
	out     chan *pb.LogMessage
	wg      sync.WaitGroup
	slots   map[string]uint64 // tasks read, by ID
	initial bool              // reading the tasks present at the start
}

// watch resolves the target and starts reading the logs of its tasks
// present now; it returns the watch of later changes.
func (r *logRun) watch(ctx context.Context) (*store.Watcher, error) {
	var tasks []*pb.Task
	var rerr error
	w, err := r.s.st.ViewAndWatch(ctx, func(tx store.ReadTx) {
		tasks, rerr = r.target(tx)
	}, store.Only[*pb.Task]())
	if err != nil {
		return nil, toStatus(err)
	}
	if rerr != nil {
		w.Close()
		return nil, rerr
	}
	r.initial = true
	for _, t := range tasks {
		r.read(ctx, t)
	}
	r.initial = false
	return w, nil
}

// target resolves the request's service, or else task, and returns the
// tasks whose logs to read.
func (r *logRun) target(tx store.ReadTx) ([]*pb.Task, error) {
	ref := r.req.GetServiceId()
	svc, err := resolve("service", ref, tx.GetService, tx.FindServices)
	if err == nil {
		r.service = svc.GetId()
		return tx.FindTasks(store.ByServiceID(svc.GetId()))
	}
	if status.Code(err) != codes.NotFound {
		return nil, err
	}
	t, terr := resolve("task", ref, tx.GetTask, tx.FindTasks)
	if terr != nil {
		if status.Code(terr) == codes.NotFound {
			return nil, status.Errorf(codes.NotFound, "no service or task %q", ref)
		}
		return nil, terr
	}
	if err := notServiceTask(t); err != nil {
		return nil, err
	}
	r.task = t.GetId()
	return []*pb.Task{t}, nil
}

// hasLog says whether a task has run on a node, so has a log there.
func hasLog(t *pb.Task) bool {
	return t.GetNodeId() != "" && t.GetStatus().GetState() >= pb.TaskState_TASK_STATE_RUNNING
}

// read starts reading a task's log, once per task.
func (r *logRun) read(ctx context.Context, t *pb.Task) {
	if _, seen := r.slots[t.GetId()]; seen || !hasLog(t) {
		return
	}
	r.slots[t.GetId()] = t.GetSlot()
	req := &pb.TaskLogsRequest{TaskId: t.GetId(), Follow: r.req.GetFollow(), SinceUnixNano: r.req.GetSinceUnixNano()}
	if r.initial {
		req.Tail = r.req.Tail // a task that starts later is new output: all of it
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		err := r.s.cfg.Agents.TaskLogs(ctx, t.GetNodeId(), req, r.out)
		if err == nil || ctx.Err() != nil {
			return
		}
		m := &pb.LogMessage{TaskId: t.GetId(), NodeId: t.GetNodeId(), Error: status.Convert(err).Message()}
		select {
		case r.out <- m:
		case <-ctx.Done():
		}
	}()
}

// relay sends the lines as they come. It ends when every log read has
// ended, unless it follows a service: then it reads the logs of tasks as
// they start, until the client leaves or the service is removed.
func (r *logRun) relay(ctx context.Context, w *store.Watcher, stream pb.Control_ServiceLogsServer) error {
	finished := make(chan struct{})
	events := w.Events()
	if !r.req.GetFollow() || r.service == "" {
		events = nil
		go func() { r.wg.Wait(); close(finished) }()
	}
	for {
		select {
		case m := <-r.out:
			m.Slot = r.slots[m.GetTaskId()]
			if err := stream.Send(m); err != nil {
				return err
			}
		case e, ok := <-events:
			if !ok {
				return toStatus(w.Err())
			}
			if t := e.Object.(*pb.Task); t.GetServiceId() == r.service && e.Kind != store.EventDelete {
				r.read(ctx, t)
			}
		case <-finished:
			return r.drain(stream)
		case <-ctx.Done():
			return nil
		}
	}
}

// drain sends the lines left once every reader has ended.
func (r *logRun) drain(stream pb.Control_ServiceLogsServer) error {
	for {
		select {
		case m := <-r.out:
			m.Slot = r.slots[m.GetTaskId()]
			if err := stream.Send(m); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// endOfStream turns the end of a relayed stream into this call's result.
func endOfStream(err error) error {
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
