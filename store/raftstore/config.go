package raftstore

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/hashicorp/raft"

	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// Config configures a Raft node. Zero durations and counts take the
// defaults below.
type Config struct {
	// DataDir holds raft.db (log and stable store) and snapshots/.
	DataDir string
	// NodeID is this manager's Raft server ID (its node ID).
	NodeID string
	// Addr is the Raft address peers dial (the advertised address).
	Addr string
	// StreamLayer carries Raft traffic; managers pass one wrapped in mutual
	// TLS, tests a TCPStreamLayer. The node closes it on Shutdown.
	StreamLayer raft.StreamLayer
	// Bootstrap starts a new cluster when DataDir holds no state: of this
	// node alone, or of Peers when set (every peer must bootstrap with the
	// same list). Ignored when state exists.
	Bootstrap bool
	// Peers are the initial voters for Bootstrap, this node included.
	Peers []Peer
	// Forward, when set, sends a write proposed on a follower to the leader
	// at leaderAddr (the manager does it over gRPC) and returns the index
	// it applied at; the follower then waits to apply it too. Without it a
	// follower's write fails with a *NotLeaderError.
	Forward func(ctx context.Context, leaderAddr string, batch *berthv1.StoreBatch) (uint64, error)
	// ForceNewCluster rewrites the membership to this node alone, keeping
	// the state in DataDir: recovery from one surviving manager.
	ForceNewCluster bool

	Logger *slog.Logger
	// Clock stamps created_at/updated_at of written objects.
	Clock func() time.Time
	// StoreOptions are passed to store.New.
	StoreOptions []store.Option

	// SnapshotMinBytes is the least log, in bytes, written since the last
	// snapshot that triggers a new one; past it a snapshot is taken when
	// that log reaches half the last snapshot's size (see snappolicy.go).
	SnapshotMinBytes int64
	// SnapshotThreshold is how many entries since the last snapshot trigger
	// a new one (checked every SnapshotInterval), a backstop to the bytes
	// rule; TrailingLogs how many entries a compaction keeps for slow
	// followers.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	TrailingLogs      uint64
	// SnapshotRetain is how many snapshots stay on disk.
	SnapshotRetain int

	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	// WriteTimeout bounds a write whose context has no deadline.
	WriteTimeout time.Duration
	// LeaderWait is how long a write waits for an election to end before
	// failing with "no leader".
	LeaderWait time.Duration
	// ProbeTimeout bounds dialing a peer to tell whether it is reachable.
	ProbeTimeout time.Duration

	// OnCommit, if set, receives how long each write proposed on this
	// node, as leader, took to commit and apply (for metrics).
	OnCommit func(time.Duration)
	// OnLeaderChange, if set, is called with the new leader's ID ("" for
	// none) at each leadership change this node observes (for metrics);
	// it must not block.
	OnLeaderChange func(leaderID string)
}

// Peer is one Raft voter.
type Peer struct {
	ID, Addr string
}

// Defaults, tuned for managers on one LAN: a dead leader is noticed within
// 0.5-1 s and replaced within about 1.5 s.
const (
	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultSnapshotMinBytes   = 4 << 20
	DefaultSnapshotThreshold  = 1 << 16
	DefaultSnapshotInterval   = 30 * time.Second
	DefaultTrailingLogs       = 10240
	DefaultSnapshotRetain     = 2
	DefaultWriteTimeout       = 10 * time.Second
	DefaultLeaderWait         = 2 * time.Second
	DefaultProbeTimeout       = 300 * time.Millisecond
)

func (c Config) withDefaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HeartbeatTimeout, DefaultHeartbeatTimeout)
	def(&c.ElectionTimeout, DefaultElectionTimeout)
	def(&c.LeaderLeaseTimeout, DefaultLeaderLeaseTimeout)
	def(&c.SnapshotInterval, DefaultSnapshotInterval)
	def(&c.WriteTimeout, DefaultWriteTimeout)
	def(&c.LeaderWait, DefaultLeaderWait)
	def(&c.ProbeTimeout, DefaultProbeTimeout)
	if c.SnapshotMinBytes == 0 {
		c.SnapshotMinBytes = DefaultSnapshotMinBytes
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotRetain == 0 {
		c.SnapshotRetain = DefaultSnapshotRetain
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.DataDir == "":
		return errors.New("raft config: DataDir is empty")
	case c.NodeID == "":
		return errors.New("raft config: NodeID is empty")
	case c.Addr == "":
		return errors.New("raft config: Addr is empty")
	case c.StreamLayer == nil:
		return errors.New("raft config: StreamLayer is nil")
	}
	return nil
}

func (c Config) raftConfig() *raft.Config {
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.NodeID)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = 10 * time.Millisecond
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	rc.Logger = newHCLog(c.Logger, "raft")
	return rc
}
