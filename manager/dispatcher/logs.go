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

// TaskLogs asks the agent of node for a task's log and sends its lines to
// out until the log ends (without follow: what is written; with follow:
// until the container has exited), or ctx ends. The agent must answer
// within a few seconds. An error says why the log cannot be read: the
// node has no session (it is down), its session ended meanwhile, or the
// agent could not read it. out is never closed.
func (d *Dispatcher) TaskLogs(ctx context.Context, node string, req *pb.TaskLogsRequest, out chan<- *pb.LogMessage) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	c := &call{node: node, task: req.GetTaskId(), ctx: ctx, attach: make(chan struct{}), done: make(chan error, 1), out: out}
	id := d.calls.add(c)
	defer d.calls.drop(id)
	gone, err := d.request(ctx, node, &pb.AgentRequest{Id: id, Kind: &pb.AgentRequest_Logs{Logs: req}})
	if err != nil {
		return err
	}
	err = d.await(ctx, c, gone, "the log of task "+req.GetTaskId())
	select {
	case <-c.done:
	default:
		d.cancelRequest(node, id) // ended early: the agent may stop reading
	}
	return err
}

// PublishLogs takes the lines an agent sends for a TaskLogs request and
// hands them to the asker. Only the node the request went to may answer
// it, and the lines are labelled with the requested task and that node,
// whatever the agent says.
func (d *Dispatcher) PublishLogs(stream pb.Dispatcher_PublishLogsServer) error {
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
		if msg := req.GetError(); msg != "" {
			c.finish(status.Error(codes.FailedPrecondition, msg))
			return stream.SendAndClose(&pb.PublishLogsResponse{})
		}
		for _, m := range req.GetMessages() {
			m = proto.Clone(m).(*pb.LogMessage)
			m.TaskId, m.NodeId = c.task, c.node
			select {
			case c.out <- m:
			case <-c.ctx.Done():
				return status.Error(codes.Canceled, "nobody reads this log any more")
			}
		}
		req, err = stream.Recv()
		if errors.Is(err, io.EOF) {
			c.finish(nil)
			return stream.SendAndClose(&pb.PublishLogsResponse{})
		}
		if err != nil {
			c.finish(err)
			return err
		}
	}
}
