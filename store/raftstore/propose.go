package raftstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// ErrShutdown means the node is shut down.
var ErrShutdown = errors.New("raft node is shut down")

// NotLeaderError says this node cannot commit a write and who can. It
// wraps store.ErrNotLeader. With LeaderAddr empty the cluster has no leader:
// Reachable of Voters managers answered, and Quorum are needed.
type NotLeaderError struct {
	LeaderID, LeaderAddr      string
	Reachable, Voters, Quorum int
}

func (e *NotLeaderError) Error() string {
	if e.LeaderAddr != "" {
		return fmt.Sprintf("not the leader: the leader is %s at %s", e.LeaderID, e.LeaderAddr)
	}
	if e.Reachable < e.Quorum {
		return fmt.Sprintf("no quorum: cluster has no leader, %d of %d managers reachable (%d needed)", e.Reachable, e.Voters, e.Quorum)
	}
	return fmt.Sprintf("cluster has no leader yet (election in progress), %d of %d managers reachable", e.Reachable, e.Voters)
}

// Unwrap makes errors.Is(err, store.ErrNotLeader) true.
func (e *NotLeaderError) Unwrap() error { return store.ErrNotLeader }

// Propose implements store.Proposer: it commits batch through Raft and
// returns once the leader applied it, with the entry's index and the
// store's verdict. A follower returns a *NotLeaderError naming the leader.
// It never hangs: without a deadline in ctx it gives up after
// Config.WriteTimeout, and a leader that loses its quorum steps down within
// LeaderLeaseTimeout, failing the write.
func (n *Node) Propose(ctx context.Context, batch *berthv1.StoreBatch) (uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.cfg.WriteTimeout)
		defer cancel()
	}
	// Leadership may move between finding the leader and its commit: a
	// write refused for that reason was never appended, so it is tried
	// again against the new leader instead of failing the user's call. A
	// cluster with no leader at all (no quorum) fails at once as before.
	backoff := 25 * time.Millisecond
	for attempt := 1; ; attempt++ {
		index, err := n.proposeOnce(ctx, batch)
		if !n.leaderMoved(err) || attempt == 5 || ctx.Err() != nil {
			return index, err
		}
		select {
		case <-ctx.Done():
			return index, err
		case <-time.After(backoff):
		}
		backoff *= 2
	}
}

// leaderMoved says whether err refused a write, surely not applied,
// because the member asked is no longer the leader while a leader exists.
func (n *Node) leaderMoved(err error) bool {
	if !errors.Is(err, store.ErrNotLeader) || errors.Is(err, store.ErrOutcomeUnknown) {
		return false
	}
	var nl *NotLeaderError
	if errors.As(err, &nl) && nl.LeaderAddr == "" {
		return false // no leader: quorum lost or an election under way
	}
	return true
}

// proposeOnce is one attempt of Propose.
func (n *Node) proposeOnce(ctx context.Context, batch *berthv1.StoreBatch) (uint64, error) {
	if err := n.awaitLeader(ctx); err != nil {
		var nl *NotLeaderError
		if n.cfg.Forward != nil && errors.As(err, &nl) && nl.LeaderAddr != "" {
			return n.forward(ctx, nl.LeaderAddr, batch)
		}
		return 0, err
	}
	data, err := encodeBatch(batch)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	f := n.raft.Apply(data, n.cfg.WriteTimeout)
	if err := wait(ctx, f); err != nil {
		return 0, n.applyError(err)
	}
	if n.cfg.OnCommit != nil {
		n.cfg.OnCommit(time.Since(start))
	}
	if err, ok := f.Response().(error); ok && err != nil {
		return f.Index(), err
	}
	return f.Index(), nil
}

// forward has the leader commit a batch, then waits until this member has
// applied it too, so the writer reads its own write wherever it reads.
func (n *Node) forward(ctx context.Context, leaderAddr string, batch *berthv1.StoreBatch) (uint64, error) {
	index, err := n.cfg.Forward(ctx, leaderAddr, batch)
	if err != nil {
		return index, err
	}
	if err := n.store.WaitIndex(ctx, index); err != nil {
		return index, fmt.Errorf("forwarded write applied at index %d on the leader; waiting for it here: %w", index, err)
	}
	return index, nil
}

// ApplyBatch commits a batch a follower forwarded (the manager's
// RaftMembership.Propose handler calls it on the leader).
func (n *Node) ApplyBatch(ctx context.Context, batch *berthv1.StoreBatch) (uint64, error) {
	return n.store.Commit(ctx, batch)
}

// Barrier waits until every entry committed before it is applied here and
// returns the store index; call it on the leader before a consistent read.
func (n *Node) Barrier(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, n.notLeader()
	}
	if err := wait(ctx, n.raft.Barrier(n.cfg.WriteTimeout)); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, n.notLeader()
		}
		return 0, fmt.Errorf("barrier: %w", err)
	}
	return n.store.Index(), nil
}

// ReadIndex makes a read on the leader linearizable without writing to the
// log: it confirms with a quorum that this node still leads and returns
// the store index, which includes every acknowledged write (a write is
// acknowledged only once the leader applied it). A follower serves a
// consistent read by getting this index from the leader and waiting for
// it (store.WaitIndex) before reading.
//
// A new leader may not have applied every entry its predecessors
// committed (after a restart, the log after the snapshot): its first
// ReadIndex of a term waits on a barrier until it has.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	if !n.IsLeader() {
		return 0, n.notLeader()
	}
	if err := n.caughtUp(ctx); err != nil {
		return 0, err
	}
	index := n.store.Index()
	if err := wait(ctx, n.raft.VerifyLeader()); err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return 0, n.notLeader()
		}
		return 0, fmt.Errorf("verify leadership: %w", err)
	}
	return index, nil
}

// caughtUp returns once this leader has applied every entry committed
// before its term: at once after the first time in a term.
func (n *Node) caughtUp(ctx context.Context) error {
	n.mu.Lock()
	done, changed := n.caughtUpTerm, n.changed
	n.mu.Unlock()
	if done {
		return nil
	}
	if _, err := n.Barrier(ctx); err != nil {
		return err
	}
	n.mu.Lock()
	n.caughtUpTerm = n.changed == changed // no leadership change meanwhile
	n.mu.Unlock()
	return nil
}

// awaitLeader returns nil when this node leads. While an election runs it
// waits up to LeaderWait; then it returns a *NotLeaderError.
func (n *Node) awaitLeader(ctx context.Context) error {
	deadline := time.NewTimer(n.cfg.LeaderWait)
	defer deadline.Stop()
	for {
		changed := n.leaderChanged()
		switch state := n.raft.State(); {
		case state == raft.Leader:
			return nil
		case state == raft.Shutdown:
			return fmt.Errorf("propose: %w", ErrShutdown)
		}
		if _, addr := n.Leader(); addr != "" {
			return n.notLeader()
		}
		select {
		case <-changed:
		case <-time.After(50 * time.Millisecond): // observations can be dropped
		case <-deadline.C:
			return n.notLeader()
		case <-ctx.Done():
			return fmt.Errorf("propose: waiting for a leader: %w: %w", ctx.Err(), n.notLeader())
		}
	}
}

// notLeader builds the error for a write this node cannot commit.
func (n *Node) notLeader() error {
	id, addr := n.Leader()
	e := &NotLeaderError{LeaderID: id, LeaderAddr: addr}
	if addr == "" {
		e.Reachable, e.Voters = n.probeVoters()
		e.Quorum = e.Voters/2 + 1
	}
	return e
}

// applyError maps raft's errors to ours, saying whether the write surely
// failed or its outcome is unknown.
func (n *Node) applyError(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return n.notLeader() // not appended: it surely failed
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return fmt.Errorf("propose: raft is overloaded, write not accepted: %w", err)
	case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrAbortedByRestore):
		return fmt.Errorf("propose: %w: %w (the write may or may not be applied; read before retrying)", store.ErrOutcomeUnknown, err)
	case errors.Is(err, raft.ErrRaftShutdown):
		return fmt.Errorf("propose: %w: %w", store.ErrOutcomeUnknown, ErrShutdown)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("propose: %w: %w (proposed, but not applied before the deadline)", store.ErrOutcomeUnknown, err)
	}
	return fmt.Errorf("propose: %w", err)
}

// wait waits for a raft future or the context. The goroutine ends when raft
// resolves the future, which it always does (commit, leadership loss or
// shutdown).
func wait(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
