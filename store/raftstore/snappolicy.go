package raftstore

import (
	"errors"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// How often a snapshot is taken: by the bytes of log written since the last
// one, measured against the size of that snapshot.
//
// A restart restores the latest snapshot and then replays the log after
// it. A snapshot is taken once that log reaches half the size of the last
// snapshot (and at least Config.SnapshotMinBytes), so a restart replays
// at most about half a snapshot's worth of log on top of the restore, and
// writing snapshots costs at most twice the bytes the log itself takes.
// Counting entries instead (hashicorp/raft's SnapshotThreshold) says little
// at our entry sizes: a thousand one-task status updates are a few hundred
// KB of log, a thousand 1 MiB assignment batches a gigabyte. The entry
// count stays as a backstop.

// snapPolicy counts the log bytes applied since the last snapshot and asks
// the node's snapshotter for one when they pass the threshold.
type snapPolicy struct {
	minBytes  int64
	since     atomic.Int64 // log bytes applied since the last snapshot's capture
	lastBytes atomic.Int64 // size of the last snapshot on disk
	want      chan struct{}
}

func newSnapPolicy(minBytes int64) *snapPolicy {
	return &snapPolicy{minBytes: minBytes, want: make(chan struct{}, 1)}
}

// threshold is the log size that calls for the next snapshot.
func (p *snapPolicy) threshold() int64 { return max(p.minBytes, p.lastBytes.Load()/2) }

// applied counts an entry of n bytes; it runs on raft's FSM goroutine and
// never blocks.
func (p *snapPolicy) applied(n int) {
	if p.since.Add(int64(n)) < p.threshold() {
		return
	}
	select {
	case p.want <- struct{}{}:
	default: // one is asked for already
	}
}

// captured is called when a snapshot captures the state: the log applied
// so far is in it.
func (p *snapPolicy) captured() { p.since.Store(0) }

// persisted records the size of a snapshot written.
func (p *snapPolicy) persisted(bytes int64) { p.lastBytes.Store(bytes) }

// snapshotter takes the snapshots the policy asks for until the node
// stops. A failed snapshot is logged and asked for again at the next
// entry: the node keeps working on its log, as raft does with its own
// threshold's snapshots.
func (n *Node) snapshotter() {
	defer n.wg.Done()
	for {
		select {
		case <-n.stop:
			return
		case <-n.snaps.want:
		}
		err := n.raft.Snapshot().Error()
		switch {
		case err == nil:
			n.log.Debug("snapshot taken", "log_bytes_threshold", n.snaps.threshold())
		case errors.Is(err, raft.ErrNothingNewToSnapshot), errors.Is(err, raft.ErrRaftShutdown):
		default:
			n.log.Warn("snapshot failed; the log keeps growing until one succeeds", "err", err)
		}
	}
}

// lastSnapshotBytes is the size of the newest snapshot in the store, 0
// when there is none.
func lastSnapshotBytes(s raft.SnapshotStore) int64 {
	metas, err := s.List()
	if err != nil || len(metas) == 0 {
		return 0
	}
	return metas[0].Size
}
