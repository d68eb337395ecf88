package controlapi

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// taskStatser reaches agents for their tasks' usage (the dispatcher does).
type taskStatser interface {
	// TaskStats sends rounds of samples of the node's tasks to out, once
	// or until ctx ends; an error says why no more come.
	TaskStats(ctx context.Context, node string, req *pb.TaskStatsRequest, out chan<- []*pb.TaskStats) error
}

// Stats streams the resource usage of the running tasks of the services
// named (of every service when none is), each sampled every second by
// its agent, until the client leaves: tasks that start later join, and
// a task that stops gets one message with gone set. With no_stream,
// one sample of each task running now, then the end. A task whose node
// is down, or goes down, gets a sample saying so instead of hanging the
// call.
func (s *Server) Stats(req *pb.StatsRequest, stream pb.Control_StatsServer) error {
	ctx := stream.Context()
	leader, fctx, err := s.toLeader(ctx)
	if err != nil {
		return err
	}
	if leader != nil {
		return forwardStats(fctx, leader, req, stream)
	}
	agents, ok := s.cfg.Agents.(taskStatser)
	if !ok {
		return errNoAgents
	}
	if err := s.view(ctx, func(store.ReadTx) error { return nil }); err != nil {
		return err
	}
	r := &statsRun{s: s, agents: agents, once: req.GetNoStream(), out: make(chan []*pb.TaskStats, 16),
		sampling: map[string]context.CancelFunc{}, names: map[string]string{}}
	defer r.wg.Wait() // after cancel: the samplers end with ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := r.watch(ctx, req.GetServices())
	if err != nil {
		return err
	}
	defer w.Close()
	return r.relay(ctx, w, stream)
}

// statsRun is one Stats call: the tasks it samples, one agent request
// each, and the samples they send.
type statsRun struct {
	s        *Server
	agents   taskStatser
	once     bool
	out      chan []*pb.TaskStats
	wg       sync.WaitGroup
	services map[string]bool // followed by ID; nil: every service
	sampling map[string]context.CancelFunc
	names    map[string]string // "web.2" by task ID
}

// watch resolves the services and starts sampling their running tasks;
// it returns the watch of later task changes.
func (r *statsRun) watch(ctx context.Context, refs []string) (*store.Watcher, error) {
	var tasks []*pb.Task
	var rerr error
	w, err := r.s.st.ViewAndWatch(ctx, func(tx store.ReadTx) {
		tasks, rerr = r.targets(tx, refs)
	}, store.Only[*pb.Task]())
	if err != nil {
		return nil, toStatus(err)
	}
	if rerr != nil {
		w.Close()
		return nil, rerr
	}
	for _, t := range tasks {
		r.start(ctx, t)
	}
	return w, nil
}

// targets resolves the services named (all when none is) and returns
// their tasks, naming each.
func (r *statsRun) targets(tx store.ReadTx, refs []string) ([]*pb.Task, error) {
	var services []*pb.Service
	if len(refs) == 0 {
		all, err := tx.FindServices(store.All)
		if err != nil {
			return nil, toStatus(err)
		}
		services = all
	} else {
		r.services = map[string]bool{}
		for _, ref := range refs {
			svc, err := resolve("service", ref, tx.GetService, tx.FindServices)
			if err != nil {
				return nil, err
			}
			services = append(services, svc)
			r.services[svc.GetId()] = true
		}
	}
	var out []*pb.Task
	for _, svc := range services {
		tasks, err := tx.FindTasks(store.ByServiceID(svc.GetId()))
		if err != nil {
			return nil, toStatus(err)
		}
		for _, t := range tasks {
			r.names[t.GetId()] = taskName(svc, t)
		}
		out = append(out, tasks...)
	}
	return out, nil
}

// runs says whether a task is running and meant to.
func runs(t *pb.Task) bool {
	return t.GetNodeId() != "" && t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING &&
		t.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING
}

// start samples a running task, once per task.
func (r *statsRun) start(ctx context.Context, t *pb.Task) {
	if _, on := r.sampling[t.GetId()]; on || !runs(t) {
		return
	}
	tctx, cancel := context.WithCancel(ctx)
	r.sampling[t.GetId()] = cancel
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		sampleNode(tctx, r.agents, t.GetNodeId(), []string{t.GetId()}, r.once, r.out)
	}()
}

// follow starts sampling a task of a followed service that starts
// running, and stops one that no longer runs, telling the client.
func (r *statsRun) follow(ctx context.Context, e store.Event, stream pb.Control_StatsServer) error {
	t := e.Object.(*pb.Task)
	if r.services != nil && !r.services[t.GetServiceId()] {
		return nil
	}
	if e.Kind != store.EventDelete && runs(t) {
		if _, named := r.names[t.GetId()]; !named {
			r.s.st.View(func(tx store.ReadTx) {
				if svc := tx.GetService(t.GetServiceId()); svc != nil {
					r.names[t.GetId()] = taskName(svc, t)
				}
			})
		}
		r.start(ctx, t)
		return nil
	}
	cancel, on := r.sampling[t.GetId()]
	if !on {
		return nil
	}
	cancel()
	delete(r.sampling, t.GetId())
	return stream.Send(&pb.StatsMessage{Stats: []*pb.TaskStats{{TaskId: t.GetId(), NodeId: t.GetNodeId(), Name: r.names[t.GetId()], Gone: true}}})
}

// relay sends the samples of the tasks sampled, named, as they come.
// With once it ends when every task has sent its sample; else it follows
// the tasks until the client leaves.
func (r *statsRun) relay(ctx context.Context, w *store.Watcher, stream pb.Control_StatsServer) error {
	finished := make(chan struct{})
	events := w.Events()
	if r.once {
		events = nil
		go func() { r.wg.Wait(); close(finished) }()
	}
	for {
		select {
		case round := <-r.out:
			if err := r.send(round, stream); err != nil {
				return err
			}
		case e, ok := <-events:
			if !ok {
				return toStatus(w.Err())
			}
			if err := r.follow(ctx, e, stream); err != nil {
				return err
			}
		case <-finished:
			for {
				select {
				case round := <-r.out:
					if err := r.send(round, stream); err != nil {
						return err
					}
				default:
					return nil
				}
			}
		case <-ctx.Done():
			return nil
		}
	}
}

// send names a round's samples and sends those of tasks still sampled.
func (r *statsRun) send(round []*pb.TaskStats, stream pb.Control_StatsServer) error {
	kept := round[:0]
	for _, st := range round {
		if _, on := r.sampling[st.GetTaskId()]; on {
			st.Name = r.names[st.GetTaskId()]
			kept = append(kept, st)
		}
	}
	if len(kept) == 0 {
		return nil
	}
	return stream.Send(&pb.StatsMessage{Stats: kept})
}

// sampleNode relays a node's samples to out; when the node cannot be
// reached, or stops answering, each of its tasks gets a sample saying why.
func sampleNode(ctx context.Context, agents taskStatser, node string, tasks []string, once bool, out chan<- []*pb.TaskStats) {
	err := agents.TaskStats(ctx, node, &pb.TaskStatsRequest{TaskIds: tasks, Once: once}, out)
	if err == nil || ctx.Err() != nil {
		return
	}
	round := make([]*pb.TaskStats, 0, len(tasks))
	for _, t := range tasks {
		round = append(round, &pb.TaskStats{TaskId: t, NodeId: node, Error: status.Convert(err).Message()})
	}
	select {
	case out <- round:
	case <-ctx.Done():
	}
}

// taskName is how `docker stats` names a Swarm task: service.slot, or
// service.node for a global service's task.
func taskName(svc *pb.Service, t *pb.Task) string {
	name := svc.GetSpec().GetAnnotations().GetName()
	if t.GetSlot() == 0 {
		return fmt.Sprintf("%s.%s", name, t.GetNodeId()[:min(12, len(t.GetNodeId()))])
	}
	return fmt.Sprintf("%s.%d", name, t.GetSlot())
}

// forwardStats relays the leader's answer to a Stats call.
func forwardStats(ctx context.Context, c pb.ControlClient, req *pb.StatsRequest, stream pb.Control_StatsServer) error {
	in, err := c.Stats(ctx, req)
	if err != nil {
		return err
	}
	for {
		m, err := in.Recv()
		if err != nil {
			return endOfStream(err)
		}
		if err := stream.Send(m); err != nil {
			return err
		}
	}
}
