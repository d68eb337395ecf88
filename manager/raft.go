package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"berth/manager/mux"
	"berth/manager/raftapi"
	pb "berth/proto/berth/v1"
	"berth/store"
	"berth/store/raftstore"
)

// openRaft is Run's second step: it opens this manager's Raft node on the
// shared port's Raft side, and works out whether this run must ask the
// cluster to add it (m.id.joined).
func (m *Manager) openRaft(ctx context.Context, mx *mux.Mux) error {
	m.peers = raftapi.NewPeers(m.id.creds)
	rc := m.cfg.Raft
	rc.DataDir, rc.NodeID, rc.Addr = m.path(raftDir), m.nodeID, m.advertise
	rc.StreamLayer = mx.RaftLayer()
	rc.Bootstrap = m.id.bootstrapped
	rc.ForceNewCluster = m.cfg.ForceNewCluster
	rc.Forward = m.peers.Forward
	rc.Logger, rc.Clock = m.log, m.cfg.Now
	node, err := raftstore.Open(ctx, rc)
	if err != nil {
		m.peers.Close()
		return fmt.Errorf("open raft in %s: %w", rc.DataDir, err)
	}
	m.node = node
	if err := m.mustJoinRaft(); err != nil {
		m.closeRaft()
		return err
	}
	return nil
}

// closeRaft shuts the Raft node down and closes the connections to peers.
func (m *Manager) closeRaft() {
	m.node.Shutdown()
	m.peers.Close()
}

// leaderControl is the leader's Control API when another manager leads,
// nil when this one does.
func (m *Manager) leaderControl(context.Context) (pb.ControlClient, error) {
	if m.node.IsLeader() {
		return nil, nil
	}
	_, addr := m.node.Leader()
	return m.peers.Control(addr)
}

// managerPeers lists the managers agents may fail over to.
func (m *Manager) managerPeers() []*pb.WeightedPeer {
	members, err := m.node.Members()
	if err != nil {
		return nil
	}
	out := make([]*pb.WeightedPeer, 0, len(members))
	for _, rm := range members {
		out = append(out, &pb.WeightedPeer{Addr: rm.Addr, NodeId: rm.NodeId, Weight: 1})
	}
	return out
}

// consistentRead makes a Control API read linearizable: the leader
// confirms its leadership; a follower waits for the leader's read index.
func (m *Manager) consistentRead(ctx context.Context) error {
	if m.node.IsLeader() {
		if _, err := m.node.ReadIndex(ctx); err == nil {
			return nil
		}
	}
	_, addr := m.node.Leader()
	if addr == "" {
		_, err := m.node.ReadIndex(ctx) // explains: no leader, quorum counts
		return err
	}
	index, err := m.peers.ReadIndex(ctx, addr)
	if err != nil {
		return err
	}
	return m.node.Store().WaitIndex(ctx, index)
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

// membership is the Raft membership the Control API changes (demote): a
// removal asked of a follower is made by the leader, which alone knows
// which managers are reachable and so whether quorum would survive.
type membership struct {
	*raftstore.Node
	peers *raftapi.Peers
}

// RemoveServer removes manager id through the leader, wherever it is asked.
func (ms membership) RemoveServer(ctx context.Context, id string) error {
	if ms.IsLeader() {
		err := ms.Node.RemoveServer(ctx, id)
		if !errors.Is(err, store.ErrNotLeader) {
			return err
		}
	}
	_, addr := ms.Leader()
	if addr == "" {
		return ms.Node.RemoveServer(ctx, id) // says why there is no leader
	}
	return ms.peers.Leave(ctx, addr, id)
}

// mustJoinRaft works out, once Raft is open, whether this run must ask
// the cluster to add this manager to Raft, and records it in m.id.joined:
// a run that joined the CA must; so must a restart after a run that
// joined the CA but stopped before Raft added it (its raft-join file
// remains and Raft holds no state), asking the managers given now or,
// without --join, those of that run. A manager whose Raft holds state was
// added (and may since have been removed: it must not add itself back),
// so its pending join is recorded as done.
func (m *Manager) mustJoinRaft() error {
	if m.id.joined {
		return nil
	}
	pending, ok, err := m.pendingRaftJoin()
	if err != nil || !ok {
		return err
	}
	members, err := m.node.Members()
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
