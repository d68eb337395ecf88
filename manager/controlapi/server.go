package controlapi

import (
	"context"
	"log/slog"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// Reads makes a read consistent; see the package comment.
type Reads func(ctx context.Context) error

// Membership is what the Control API needs of the Raft cluster.
type Membership interface {
	Members() ([]*pb.RaftMember, error)
	Leader() (id, addr string)
	AppliedIndex() uint64
	// RemoveServer removes a manager, refusing (with the reason) when that
	// would remove the last one or lose quorum.
	RemoveServer(ctx context.Context, id string) error
}

// Config assembles a Server.
type Config struct {
	Store      *store.MemoryStore
	Reads      Reads
	Membership Membership
	// ClusterID names the one Cluster object.
	ClusterID string
	// NewToken makes a fresh join token (it pins the cluster CA).
	NewToken func() (string, error)
	// SealSecret encrypts secret data before it enters the replicated state.
	SealSecret func([]byte) ([]byte, error)
	// Agents reaches agents through the leader's dispatcher (logs).
	Agents Agents
	// Leader returns a client of the leader's Control API when this
	// manager does not lead, nil when it does; calls that reach agents are
	// passed on to it. Nil means this manager always serves them itself.
	Leader func(ctx context.Context) (pb.ControlClient, error)
	// CanPromote, if set, says why a worker may not be promoted (the
	// cluster's state backend cannot add a manager that way); nil: it may.
	CanPromote func() error
	Now        func() time.Time
	Log        *slog.Logger
}

// Server implements pb.ControlServer.
type Server struct {
	pb.UnimplementedControlServer
	cfg Config
	st  *store.MemoryStore
}

// New returns a Control server.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Server{cfg: cfg, st: cfg.Store}
}

// view runs cb over a consistent view.
func (s *Server) view(ctx context.Context, cb func(store.ReadTx) error) error {
	if s.cfg.Reads != nil {
		if err := s.cfg.Reads(ctx); err != nil {
			return toStatus(err)
		}
	}
	var err error
	s.st.View(func(tx store.ReadTx) { err = cb(tx) })
	return toStatus(err)
}

// update runs cb in a write transaction.
//
// A manager runs cb on its own copy of the store, which may lag writes
// acknowledged through another manager (a follower an entry behind, a new
// leader still applying its predecessor's log). A write cb lets through is
// safe: the leader checks it again when it applies it. A write cb refuses
// (a name still taken, a service not created yet, a version not seen yet)
// may rest on a state older than the call, which no linearizable API may
// answer from. So a refused write is tried once more after a
// consistent-read barrier; a refusal then rests on a state at least as new
// as the call, as reads do.
func (s *Server) update(ctx context.Context, cb func(store.Tx) error) error {
	err := s.st.Update(ctx, cb)
	if err == nil || s.cfg.Reads == nil || !refused(err) {
		return toStatus(err)
	}
	if err := s.cfg.Reads(ctx); err != nil {
		return toStatus(err)
	}
	return toStatus(s.st.Update(ctx, cb))
}

// refused reports whether err refuses a write for what the store holds,
// as opposed to failing to commit it (whose outcome may be unknown, and
// which must not be tried again).
func refused(err error) bool {
	switch status.Code(toStatus(err)) {
	case codes.NotFound, codes.AlreadyExists, codes.Aborted, codes.FailedPrecondition, codes.InvalidArgument:
		return true
	}
	return false
}
