package controlapi

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// forwardedKey marks a call a follower passed on to the leader, so that a
// manager that does not lead either refuses it instead of passing it on.
const forwardedKey = "berth-forwarded"

// toLeader returns a client of the leader's Control API, and the context
// to call it with, when this manager does not lead; nil when it does.
// Calls that reach agents (logs, exec) go through the leader: agents keep
// their sessions with it.
func (s *Server) toLeader(ctx context.Context) (pb.ControlClient, context.Context, error) {
	if s.cfg.Leader == nil {
		return nil, ctx, nil
	}
	c, err := s.cfg.Leader(ctx)
	if err != nil || c == nil {
		return nil, ctx, toStatus(err)
	}
	if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(forwardedKey)) > 0 {
		return nil, ctx, status.Error(codes.Unavailable, "a manager passed this call on, but this one does not lead either (an election is under way); retry")
	}
	return c, metadata.AppendToOutgoingContext(ctx, forwardedKey, "1"), nil
}

// forwardLogs relays the leader's answer to a ServiceLogs call.
func forwardLogs(ctx context.Context, c pb.ControlClient, req *pb.ServiceLogsRequest, stream pb.Control_ServiceLogsServer) error {
	in, err := c.ServiceLogs(ctx, req)
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
