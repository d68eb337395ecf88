package controlapi

import (
	"context"
	"log/slog"
	"time"

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
func (s *Server) update(ctx context.Context, cb func(store.Tx) error) error {
	return toStatus(s.st.Update(ctx, cb))
}
