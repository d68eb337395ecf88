package controlapi

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// ServiceLogs is in the API contract, but agents do not publish container
// logs to the managers yet (the dispatcher's PublishLogs has no caller), so
// there is nothing to stream. It says so instead of gRPC's bare
// "not implemented"; until then a task's log is on its node, under
// DATA_DIR/runtime/containers/<task ID>/.
func (s *Server) ServiceLogs(*pb.ServiceLogsRequest, pb.Control_ServiceLogsServer) error {
	return status.Error(codes.Unimplemented, "service logs are not collected yet: agents keep each task's log on their node, under DATA_DIR/runtime/containers/<task ID>/")
}
