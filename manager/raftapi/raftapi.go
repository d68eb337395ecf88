// Package raftapi serves RaftMembership, the managers' API among
// themselves: joining and leaving the Raft cluster, and the two services a
// follower needs from the leader — committing a forwarded write and handing
// out a read index for consistent reads. Peers is its client side.
package raftapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/ca"
	"berth/manager/mux"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// Node is what the server needs of this manager's Raft node.
type Node interface {
	IsLeader() bool
	Leader() (id, addr string)
	AddVoter(ctx context.Context, id, addr string) error
	RemoveServer(ctx context.Context, id string) error
	Members() ([]*pb.RaftMember, error)
	ApplyBatch(ctx context.Context, b *pb.StoreBatch) (uint64, error)
	ReadIndex(ctx context.Context) (uint64, error)
}

// Server implements pb.RaftMembershipServer.
type Server struct {
	pb.UnimplementedRaftMembershipServer
	node  Node
	peers *Peers
	log   *slog.Logger
}

// New returns a RaftMembership server; peers forwards membership changes
// that reach a follower to the leader.
func New(node Node, peers *Peers, log *slog.Logger) *Server {
	return &Server{node: node, peers: peers, log: log}
}

// Join adds the calling manager as a voter.
func (s *Server) Join(ctx context.Context, req *pb.JoinRequest) (*pb.JoinResponse, error) {
	id, ok := mux.PeerIdentity(ctx)
	if !ok || id.Role != ca.RoleManager || id.NodeID != req.GetNodeId() {
		return nil, status.Error(codes.PermissionDenied, "only a manager may join, as itself: get a manager certificate with a manager join token first")
	}
	if !s.node.IsLeader() {
		return s.peers.forwardJoin(ctx, s.leaderAddr(), req)
	}
	if err := s.node.AddVoter(ctx, req.GetNodeId(), req.GetAddr()); err != nil {
		return nil, toStatus(err)
	}
	s.log.Info("manager joined", "node", req.GetNodeId(), "addr", req.GetAddr())
	members, err := s.node.Members()
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.JoinResponse{Members: members}, nil
}

// Leave removes a manager, refusing when that would lose quorum.
func (s *Server) Leave(ctx context.Context, req *pb.LeaveRequest) (*pb.LeaveResponse, error) {
	if !s.node.IsLeader() {
		return s.peers.forwardLeave(ctx, s.leaderAddr(), req)
	}
	if err := s.node.RemoveServer(ctx, req.GetNodeId()); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	return &pb.LeaveResponse{}, nil
}

// Propose commits a batch a follower forwarded.
func (s *Server) Propose(ctx context.Context, req *pb.ProposeRequest) (*pb.ProposeResponse, error) {
	if !s.node.IsLeader() {
		return nil, status.Error(codes.Unavailable, fmt.Sprintf("%v", store.ErrNotLeader))
	}
	index, err := s.node.ApplyBatch(ctx, req.GetBatch())
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.ProposeResponse{Index: index}, nil
}

// Barrier returns a read index for a follower's consistent read.
func (s *Server) Barrier(ctx context.Context, _ *pb.BarrierRequest) (*pb.BarrierResponse, error) {
	index, err := s.node.ReadIndex(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &pb.BarrierResponse{Index: index}, nil
}

func (s *Server) leaderAddr() string {
	_, addr := s.node.Leader()
	return addr
}

// sentinels travel between managers inside status messages and are
// restored on the other side, so errors.Is works across forwarding.
var sentinels = []struct {
	err  error
	code codes.Code
}{
	{store.ErrNotFound, codes.NotFound},
	{store.ErrExist, codes.AlreadyExists},
	{store.ErrNameConflict, codes.AlreadyExists},
	{store.ErrSequenceConflict, codes.Aborted},
	{store.ErrNotLeader, codes.Unavailable},
	{store.ErrOutcomeUnknown, codes.Unknown},
	{store.ErrInvalidObject, codes.InvalidArgument},
}

func toStatus(err error) error {
	for _, s := range sentinels {
		if errors.Is(err, s.err) {
			return status.Error(s.code, err.Error())
		}
	}
	return status.Error(codes.Internal, err.Error())
}

// fromStatus restores the store sentinel an error carries.
func fromStatus(err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	for _, s := range sentinels {
		if strings.Contains(st.Message(), s.err.Error()) {
			return &remoteError{msg: st.Message(), err: s.err}
		}
	}
	return errors.New(st.Message())
}

// remoteError is an error another manager reported: its message as sent
// (which names the sentinel already), matching the sentinel for errors.Is.
type remoteError struct {
	msg string
	err error
}

func (e *remoteError) Error() string { return e.msg }
func (e *remoteError) Unwrap() error { return e.err }
