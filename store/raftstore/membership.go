package raftstore

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/raft"

	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// ErrLastManager refuses removing the only voter.
var ErrLastManager = errors.New("refusing to remove the last manager: the cluster would lose all its state")

// ErrWouldLoseQuorum refuses a removal that leaves too few reachable voters.
var ErrWouldLoseQuorum = errors.New("refusing a change that would lose quorum")

// AddVoter adds (or updates the address of) a voting member. Leader only.
func (n *Node) AddVoter(ctx context.Context, id, addr string) error {
	if !n.IsLeader() {
		return fmt.Errorf("add manager %s: %w", id, n.notLeader())
	}
	f := n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), 0, n.cfg.WriteTimeout)
	if err := wait(ctx, f); err != nil {
		return fmt.Errorf("add manager %s at %s: %w", id, addr, n.applyError(err))
	}
	n.log.Info("added raft voter", "peer", id, "addr", addr)
	return nil
}

// RemoveServer removes a member. Leader only. It refuses removing the last
// voter, or a voter when the voters left would have fewer reachable members
// than their quorum, and says why.
func (n *Node) RemoveServer(ctx context.Context, id string) error {
	if !n.IsLeader() {
		return fmt.Errorf("remove manager %s: %w", id, n.notLeader())
	}
	servers, err := n.servers()
	if err != nil {
		return err
	}
	if err := n.checkRemoval(servers, id); err != nil {
		return err
	}
	if err := wait(ctx, n.raft.RemoveServer(raft.ServerID(id), 0, n.cfg.WriteTimeout)); err != nil {
		return fmt.Errorf("remove manager %s: %w", id, n.applyError(err))
	}
	n.log.Info("removed raft member", "peer", id)
	return nil
}

func (n *Node) checkRemoval(servers []raft.Server, id string) error {
	var found, voter bool
	remaining, reachable := 0, 0
	for _, s := range servers {
		isVoter := s.Suffrage == raft.Voter
		if string(s.ID) == id {
			found, voter = true, isVoter
			continue
		}
		if isVoter {
			remaining++
			if n.reachable(string(s.ID)) {
				reachable++
			}
		}
	}
	switch {
	case !found:
		return fmt.Errorf("remove manager %s: not a raft member: %w", id, store.ErrNotFound)
	case !voter:
		return nil
	case remaining == 0:
		return fmt.Errorf("remove manager %s: %w", id, ErrLastManager)
	}
	if quorum := remaining/2 + 1; reachable < quorum {
		return fmt.Errorf("remove manager %s: %w: only %d of the %d remaining managers are reachable, quorum needs %d; bring managers back first",
			id, ErrWouldLoseQuorum, reachable, remaining, quorum)
	}
	return nil
}

// reachable reports whether the leader hears from a peer (itself: yes).
func (n *Node) reachable(id string) bool {
	if id == n.cfg.NodeID {
		return true
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return !n.unreachable[id]
}

func (n *Node) servers() ([]raft.Server, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, fmt.Errorf("read raft configuration: %w", err)
	}
	return f.Configuration().Servers, nil
}

// Members lists the Raft members. Reachability is known on the leader
// (from heartbeats); elsewhere only for this node and the leader.
func (n *Node) Members() ([]*berthv1.RaftMember, error) {
	servers, err := n.servers()
	if err != nil {
		return nil, err
	}
	leaderID, _ := n.Leader()
	lead := n.IsLeader()
	out := make([]*berthv1.RaftMember, 0, len(servers))
	for _, s := range servers {
		m := &berthv1.RaftMember{
			NodeId: string(s.ID), Addr: string(s.Address),
			Voter: s.Suffrage == raft.Voter, Leader: string(s.ID) == leaderID,
			Reachability: berthv1.ManagerStatus_REACHABILITY_UNKNOWN,
		}
		switch {
		case lead && n.reachable(m.NodeId), m.NodeId == n.cfg.NodeID, m.Leader:
			m.Reachability = berthv1.ManagerStatus_REACHABILITY_REACHABLE
		case lead:
			m.Reachability = berthv1.ManagerStatus_REACHABILITY_UNREACHABLE
		}
		out = append(out, m)
	}
	return out, nil
}

// probeVoters dials every other voter through the stream layer and
// returns how many voters (this one included) answered, and how many there
// are. Used only to explain why there is no leader.
func (n *Node) probeVoters() (reachable, voters int) {
	servers, err := n.servers()
	if err != nil {
		return 1, 1
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if string(s.ID) == n.cfg.NodeID {
			mu.Lock() // probes of earlier voters may be counting already
			reachable++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func(addr raft.ServerAddress) {
			defer wg.Done()
			conn, err := n.cfg.StreamLayer.Dial(addr, n.cfg.ProbeTimeout)
			if err != nil {
				return
			}
			_ = conn.Close()
			mu.Lock()
			reachable++
			mu.Unlock()
		}(s.Address)
	}
	wg.Wait()
	return reachable, voters
}
