package main

import (
	"context"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// racyControl answers UpdateNode with Aborted while the node's version
// keeps moving under the CLI (an agent reporting status), then accepts.
type racyControl struct {
	pb.ControlClient
	conflicts int
	version   uint64
	written   *pb.NodeSpec
}

func (c *racyControl) GetNode(context.Context, *pb.GetNodeRequest, ...grpc.CallOption) (*pb.GetNodeResponse, error) {
	return &pb.GetNodeResponse{Node: &pb.Node{Id: "n1", Meta: &pb.Meta{Version: c.version}, Spec: &pb.NodeSpec{}}}, nil
}

func (c *racyControl) UpdateNode(_ context.Context, req *pb.UpdateNodeRequest, _ ...grpc.CallOption) (*pb.UpdateNodeResponse, error) {
	if req.GetNodeVersion() != c.version {
		return nil, status.Error(codes.FailedPrecondition, "stale version sent after a re-read")
	}
	if c.conflicts > 0 {
		c.conflicts--
		c.version++
		return nil, status.Error(codes.Aborted, "update out of sequence")
	}
	c.written = req.GetSpec()
	return &pb.UpdateNodeResponse{}, nil
}

func TestUpdateNodeRereadsOnConflict(t *testing.T) {
	c := &racyControl{conflicts: 2, version: 7}
	err := updateNode(context.Background(), c, "n1", func(s *pb.NodeSpec) error { s.DesiredRole = pb.NodeSpec_ROLE_WORKER; return nil })
	if err != nil {
		t.Fatalf("updateNode after two conflicts: %v", err)
	}
	if c.written.GetDesiredRole() != pb.NodeSpec_ROLE_WORKER {
		t.Fatalf("written spec %v, want the edit applied", c.written)
	}

	c = &racyControl{conflicts: 100, version: 1}
	err = updateNode(context.Background(), c, "n1", func(*pb.NodeSpec) error { return nil })
	if status.Code(err) != codes.Aborted {
		t.Fatalf("updateNode under endless conflicts = %v, want the Aborted error after a few tries", err)
	}
}
