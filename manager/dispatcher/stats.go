package dispatcher

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// TaskStats asks the agent of node to sample its tasks' resource usage
// and sends each round of samples to out: one round with req.once, else
// one per period until ctx ends. An error says why no more come: the node
// has no session (it is down), its session ended meanwhile, or it did
// not answer in time. out is never closed.
func (d *Dispatcher) TaskStats(ctx context.Context, node string, req *pb.TaskStatsRequest, out chan<- []*pb.TaskStats) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tasks := map[string]bool{}
	for _, t := range req.GetTaskIds() {
		tasks[t] = true
	}
	c := &call{node: node, ctx: ctx, attach: make(chan struct{}), done: make(chan error, 1), stats: out, tasks: tasks}
	id := d.calls.add(c)
	defer d.calls.drop(id)
	gone, err := d.request(ctx, node, &pb.AgentRequest{Id: id, Kind: &pb.AgentRequest_Stats{Stats: req}})
	if err != nil {
		return err
	}
	err = d.await(ctx, c, gone, "the usage of its tasks")
	select {
	case <-c.done:
	default:
		d.cancelRequest(node, id)
	}
	return err
}

// PublishStats takes the samples an agent sends for a TaskStats request
// and hands them to the asker. Only the node the request went to may
// answer, only for the tasks asked, and its samples are labelled with
// that node whatever the agent says.
func (d *Dispatcher) PublishStats(stream pb.Dispatcher_PublishStatsServer) error {
	id, t, err := d.caller(stream.Context())
	if err != nil {
		return err
	}
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	if err := d.checkSession(t, id.NodeID, req.GetSessionId()); err != nil {
		return err
	}
	c, err := d.calls.take(req.GetRequestId(), id.NodeID)
	if err != nil {
		return err
	}
	for {
		if err := c.relayStats(req.GetStats()); err != nil {
			return err
		}
		req, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			c.finish(nil)
			return stream.SendAndClose(&pb.PublishStatsResponse{})
		}
		if err != nil {
			c.finish(err)
			return err
		}
	}
}

// relayStats hands one round of samples to the asker.
func (c *call) relayStats(in []*pb.TaskStats) error {
	var round []*pb.TaskStats
	for _, s := range in {
		if !c.tasks[s.GetTaskId()] {
			continue
		}
		s = proto.Clone(s).(*pb.TaskStats)
		s.NodeId = c.node
		round = append(round, s)
	}
	if len(round) == 0 {
		return nil
	}
	select {
	case c.stats <- round:
		return nil
	case <-c.ctx.Done():
		return status.Error(codes.Canceled, "nobody reads these stats any more")
	}
}
