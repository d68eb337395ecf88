package dispatcher

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// ExecTask asks the agent of node to run start in a task's container
// (start.task is the task's ID) and returns the stream the agent answered
// on: Send gives the process input, Recv takes its output, the exit code
// last. Calling end ends that stream (the agent kills a process still
// running). An error says the node has no session, its session ended, or
// it did not answer in time.
func (d *Dispatcher) ExecTask(ctx context.Context, node string, start *pb.ExecStart) (s pb.Dispatcher_ExecServer, end func(), err error) {
	ctx, cancel := context.WithCancel(ctx)
	c := &call{node: node, task: start.GetTask(), ctx: ctx, attach: make(chan struct{}), done: make(chan error, 1),
		exec: make(chan pb.Dispatcher_ExecServer, 1)}
	id := d.calls.add(c)
	defer d.calls.drop(id)
	gone, err := d.request(ctx, node, &pb.AgentRequest{Id: id, Kind: &pb.AgentRequest_Exec{Exec: start}})
	if err != nil {
		cancel()
		return nil, nil, err
	}
	timer := time.NewTimer(answerTimeout)
	defer timer.Stop()
	select {
	case s := <-c.exec:
		return s, cancel, nil
	case <-gone:
		err = status.Errorf(codes.Unavailable, "node %s's session with the managers ended before it started the process (the node is down or restarting)", node)
	case <-timer.C:
		err = status.Errorf(codes.DeadlineExceeded, "node %s did not answer the exec request within %v", node, answerTimeout)
	case <-ctx.Done():
		err = status.FromContextError(ctx.Err()).Err()
	}
	cancel()
	d.cancelRequest(node, id)
	return nil, nil, err
}

// Exec is the agent's end of an ExecTask: its first message names the
// request, which must have been sent to the caller's node. The stream is
// handed to the asker and lives until the asker ends it or the node's
// session ends.
func (d *Dispatcher) Exec(stream pb.Dispatcher_ExecServer) error {
	id, _, err := d.caller(stream.Context())
	if err != nil {
		return err
	}
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	rid := first.GetRequestId()
	if rid == "" {
		return status.Error(codes.InvalidArgument, "the first message must name the request (request_id)")
	}
	c, err := d.calls.take(rid, id.NodeID)
	if err != nil {
		return err
	}
	gone := d.sessionGone(id.NodeID)
	c.exec <- stream
	select {
	case <-c.ctx.Done():
		return nil
	case <-gone:
		return status.Error(codes.Unavailable, "the node's session ended")
	case <-stream.Context().Done():
		return status.FromContextError(stream.Context().Err()).Err()
	}
}
