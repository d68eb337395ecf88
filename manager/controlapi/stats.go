package controlapi

import (
	"context"
	"fmt"
	"sort"
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
// named (of every service when none is), sampled by each task's agent:
// a message per node and period, or one sample per task with no_stream.
// The tasks of a node that is down, or goes down, get one sample saying
// so instead of hanging the call.
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
	byNode, names, err := s.statsTargets(ctx, req.GetServices())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make(chan []*pb.TaskStats, 16)
	var wg sync.WaitGroup
	for node, tasks := range byNode {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sampleNode(ctx, agents, node, tasks, req.GetNoStream(), out)
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	send := func(round []*pb.TaskStats) error {
		for _, st := range round {
			st.Name = names[st.GetTaskId()]
		}
		return stream.Send(&pb.StatsMessage{Stats: round})
	}
	for {
		select {
		case round := <-out:
			if err := send(round); err != nil {
				return err
			}
		case <-finished:
			for {
				select {
				case round := <-out:
					if err := send(round); err != nil {
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

// statsTargets finds the running tasks of the services named (every
// service when none is), by node, and their names ("web.2").
func (s *Server) statsTargets(ctx context.Context, refs []string) (map[string][]string, map[string]string, error) {
	byNode, names := map[string][]string{}, map[string]string{}
	err := s.view(ctx, func(tx store.ReadTx) error {
		services, err := statsServices(tx, refs)
		if err != nil {
			return err
		}
		for _, svc := range services {
			tasks, err := tx.FindTasks(store.ByServiceID(svc.GetId()))
			if err != nil {
				return toStatus(err)
			}
			for _, t := range tasks {
				if t.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING || t.GetDesiredState() != pb.TaskState_TASK_STATE_RUNNING || t.GetNodeId() == "" {
					continue
				}
				byNode[t.GetNodeId()] = append(byNode[t.GetNodeId()], t.GetId())
				names[t.GetId()] = taskName(svc, t)
			}
		}
		return nil
	})
	for _, ts := range byNode {
		sort.Strings(ts)
	}
	return byNode, names, err
}

// statsServices resolves the services named, or lists them all.
func statsServices(tx store.ReadTx, refs []string) ([]*pb.Service, error) {
	if len(refs) == 0 {
		all, err := tx.FindServices(store.All)
		return all, toStatus(err)
	}
	var out []*pb.Service
	for _, ref := range refs {
		svc, err := resolve("service", ref, tx.GetService, tx.FindServices)
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, nil
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
