package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"

	"berth/manager/mux"
	"berth/manager/raftapi"
	pb "berth/proto/berth/v1"
	"berth/store"
	"berth/store/raftstore"
)

// raftBackend is the embedded Raft: the default backend.
type raftBackend struct {
	*raftstore.Node
	peers *raftapi.Peers
	log   *slog.Logger
	// join asks the cluster to add this manager; nil unless this run
	// must (mustJoinRaft).
	join func(context.Context) error
}

// openRaft opens this manager's Raft node on the shared port's Raft
// side, and works out whether this run must ask the cluster to add it
// (m.id.joined).
func (m *Manager) openRaft(ctx context.Context, mx *mux.Mux) (*raftBackend, error) {
	rc := m.cfg.Raft
	rc.DataDir, rc.NodeID, rc.Addr = m.path(raftDir), m.nodeID, m.advertise
	rc.StreamLayer = mx.RaftLayer()
	rc.Bootstrap = m.id.bootstrapped
	rc.ForceNewCluster = m.cfg.ForceNewCluster
	rc.Forward = m.peers.Forward
	rc.Logger, rc.Clock = m.log, m.cfg.Now
	node, err := raftstore.Open(ctx, rc)
	if err != nil {
		return nil, fmt.Errorf("open raft in %s: %w", rc.DataDir, err)
	}
	r := &raftBackend{Node: node, peers: m.peers, log: m.log}
	if err := m.mustJoinRaft(node); err != nil {
		node.Shutdown()
		return nil, err
	}
	if m.id.joined {
		r.join = m.joinRaft
	}
	return r, nil
}

// Close shuts the Raft node down.
func (r *raftBackend) Close() { r.Node.Shutdown() }

// Register serves Raft membership: joins, leaves, forwarded writes and
// read indexes.
func (r *raftBackend) Register(srv *grpc.Server) {
	pb.RegisterRaftMembershipServer(srv, raftapi.New(r.Node, r.peers, r.log))
}

// Run joins Raft when this run must.
func (r *raftBackend) Run(ctx context.Context) error {
	if r.join == nil {
		return nil
	}
	return r.join(ctx)
}

// CanPromote: a promoted node's manager joins Raft.
func (r *raftBackend) CanPromote() error { return nil }

// LeaderControl is the leader's Control API when another manager leads,
// nil when this one does.
func (r *raftBackend) LeaderControl(context.Context) (pb.ControlClient, error) {
	if r.Node.IsLeader() {
		return nil, nil
	}
	_, addr := r.Node.Leader()
	return r.peers.Control(addr)
}

// ConsistentRead makes a Control API read linearizable: the leader
// confirms its leadership; a follower waits for the leader's read index.
func (r *raftBackend) ConsistentRead(ctx context.Context) error {
	if r.Node.IsLeader() {
		if _, err := r.Node.ReadIndex(ctx); err == nil {
			return nil
		}
	}
	_, addr := r.Node.Leader()
	if addr == "" {
		_, err := r.Node.ReadIndex(ctx) // explains: no leader, quorum counts
		return err
	}
	index, err := r.peers.ReadIndex(ctx, addr)
	if err != nil {
		return err
	}
	return r.Node.Store().WaitIndex(ctx, index)
}

// joinRaft asks the cluster to add this manager as a voter, retrying until
// it is a member.
func (m *Manager) joinRaft(ctx context.Context) error {
	req := &pb.JoinRequest{NodeId: m.nodeID, Addr: m.advertise}
	for attempt := 0; ; attempt++ {
		for _, addr := range m.cfg.Join {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := m.peers.Join(cctx, addr, req)
			cancel()
			if err == nil {
				m.log.Info("joined raft", "via", addr)
				return m.markRaftJoined()
			}
			m.log.Warn("raft join failed; retrying", "via", addr, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 2*time.Second)):
		}
	}
}

// RemoveServer removes manager id (the Control API's demotion) through
// the leader, wherever it is asked: the leader alone knows which managers
// are reachable and so whether quorum would survive.
func (r *raftBackend) RemoveServer(ctx context.Context, id string) error {
	if r.Node.IsLeader() {
		err := r.Node.RemoveServer(ctx, id)
		if !errors.Is(err, store.ErrNotLeader) {
			return err
		}
	}
	_, addr := r.Node.Leader()
	if addr == "" {
		return r.Node.RemoveServer(ctx, id) // says why there is no leader
	}
	return r.peers.Leave(ctx, addr, id)
}

// mustJoinRaft works out, once Raft is open, whether this run must ask
// the cluster to add this manager to Raft, and records it in m.id.joined:
// a run that joined the CA must; so must a restart after a run that
// joined the CA but stopped before Raft added it (its raft-join file
// remains and Raft holds no state), asking the managers given now or,
// without --join, those of that run. A manager whose Raft holds state was
// added (and may since have been removed: it must not add itself back),
// so its pending join is recorded as done.
func (m *Manager) mustJoinRaft(node *raftstore.Node) error {
	if m.id.joined {
		return nil
	}
	pending, ok, err := m.pendingRaftJoin()
	if err != nil || !ok {
		return err
	}
	members, err := node.Members()
	if err != nil {
		return err
	}
	if len(members) > 0 {
		return m.markRaftJoined()
	}
	if len(m.cfg.Join) == 0 {
		m.cfg.Join = pending
	}
	if len(m.cfg.Join) == 0 {
		return fmt.Errorf("an earlier run joined the cluster but Raft did not add this manager, and %s names no manager to ask: start with --join MANAGER_ADDR", m.path(raftJoinFile))
	}
	m.id.joined = true
	m.log.Info("an earlier run joined the cluster but Raft did not add it; asking to join Raft", "via", m.cfg.Join)
	return nil
}

// pendingRaftJoin returns the managers to join Raft through, and true,
// when an earlier run joined the cluster and Raft was not known to have
// added this manager.
func (m *Manager) pendingRaftJoin() ([]string, bool, error) {
	b, err := os.ReadFile(m.path(raftJoinFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("pending raft join: %w", err)
	}
	return strings.Fields(string(b)), true, nil
}

// markRaftJoined records that Raft has added this manager: later starts
// do not ask to join again.
func (m *Manager) markRaftJoined() error {
	if err := os.Remove(m.path(raftJoinFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("record the raft join: %w", err)
	}
	return nil
}
