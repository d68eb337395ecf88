package manager

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/manager/nodeca"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// ErrRemoved ends Run when this manager is no longer a Raft voter.
var ErrRemoved = errors.New("this manager was demoted or removed from the cluster")

// membershipPoll is how often a manager checks it still has a vote.
const membershipPoll = 250 * time.Millisecond

// removedGrace is how long a removed manager keeps serving, so that
// in-flight calls (the demotion itself) are answered.
const removedGrace = time.Second

// registerSelf records this manager's own Node (ready, with its
// description) and writes the CLI bundle, once the cluster state allows
// it; it retries while the cluster has no leader. Meanwhile it watches
// this manager's membership and returns ErrRemoved when it loses its vote
// (see watchMembership).
func (m *Manager) registerSelf(ctx context.Context) error {
	registered := make(chan struct{})
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.watchMembership(gctx, registered) })
	g.Go(func() error {
		if !m.register(gctx) {
			return nil
		}
		close(registered)
		return m.keepClientBundle(gctx)
	})
	return g.Wait()
}

// register writes this manager's Node and the client bundle, retrying
// until it succeeds (true) or ctx ends (false).
func (m *Manager) register(ctx context.Context) bool {
	for attempt := 0; ; attempt++ {
		err := m.writeSelf(ctx)
		if err == nil {
			err = m.writeClientBundle(ctx)
		}
		if err == nil {
			return true
		}
		m.log.Debug("registering this manager; will retry", "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, 2*time.Second)):
		}
	}
}

func (m *Manager) writeSelf(ctx context.Context) error {
	hostname, _ := os.Hostname()
	now := timestamppb.New(m.cfg.Now())
	desc := &pb.NodeDescription{
		Hostname: hostname, Addr: m.advertise,
		Platform:  &pb.Platform{Os: runtime.GOOS, Architecture: runtime.GOARCH},
		Resources: &pb.ResourceSet{NanoCpus: int64(runtime.NumCPU()) * 1e9},
	}
	return m.be.Store().Update(ctx, func(tx store.Tx) error {
		if tx.GetCluster(m.clusterID) == nil {
			return errors.New("no cluster object yet")
		}
		n := tx.GetNode(m.nodeID)
		if n == nil {
			return tx.CreateNode(&pb.Node{
				Id: m.nodeID, Role: pb.NodeSpec_ROLE_MANAGER, Description: desc,
				Spec:   &pb.NodeSpec{Annotations: &pb.Annotations{}, DesiredRole: pb.NodeSpec_ROLE_MANAGER, Availability: nodeca.ManagerAvailability(pb.NodeSpec_ROLE_MANAGER)},
				Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY, ChangedAt: now},
			})
		}
		n = proto.Clone(n).(*pb.Node)
		switch {
		case n.Description == nil:
			n.Description = desc
		case !m.cfg.SharedNode:
			n.Description.Hostname, n.Description.Addr, n.Description.Platform = desc.Hostname, desc.Addr, desc.Platform
		}
		// A promoted node is a manager once its manager has a vote and
		// registers (a manager demoted, or removed and restarted, is not
		// made one again).
		if n.GetRole() != pb.NodeSpec_ROLE_MANAGER && n.GetSpec().GetDesiredRole() == pb.NodeSpec_ROLE_MANAGER {
			if voter, _ := m.isVoter(); !voter {
				return errors.New("promoted, but not a raft voter yet")
			}
			n.Role = pb.NodeSpec_ROLE_MANAGER
		}
		if n.GetStatus().GetState() != pb.NodeStatus_STATE_READY {
			n.Status = &pb.NodeStatus{State: pb.NodeStatus_STATE_READY, ChangedAt: now}
		}
		return tx.UpdateNode(n)
	})
}

// watchMembership returns ErrRemoved once this manager has lost its vote
// (demoted, or removed while down). Such a manager gets no more Raft
// entries: serving on would answer reads from stale state or let calls
// hang, so Run ends and says what to do. A manager that joins in this run
// replays configurations from before it was added; it counts as a member
// once registered (its own write, forwarded to the leader and applied
// here, comes after the entry that added it).
func (m *Manager) watchMembership(ctx context.Context, registered <-chan struct{}) error {
	t := time.NewTicker(membershipPoll)
	defer t.Stop()
	for {
		member := !m.id.joined || isClosed(registered)
		if voter, known := m.isVoter(); member && known && !voter {
			// The call that demoted this manager may have come through
			// it: let its answer go out before the server stops.
			select {
			case <-ctx.Done():
			case <-time.After(removedGrace):
			}
			return fmt.Errorf("manager %s: %w: it is no longer one of the cluster's managers and must not serve its state; "+
				"to make this host a manager again, start berth-manager with an empty --data-dir, --join and a token from `berth cluster join-token manager`", m.nodeID, ErrRemoved)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// isVoter reports whether this manager votes in its latest known Raft
// configuration; known is false while that configuration is empty.
func (m *Manager) isVoter() (voter, known bool) {
	members, err := m.be.Members()
	if err != nil || len(members) == 0 {
		return false, false
	}
	for _, mem := range members {
		if mem.GetNodeId() == m.nodeID {
			return mem.GetVoter(), true
		}
	}
	return false, true
}
