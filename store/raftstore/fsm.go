package raftstore

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// Entry types: the first byte of every command entry.
const (
	entryStoreBatch byte = 0
	// entryIgnorable marks types an older member may skip safely.
	entryIgnorable byte = 0x80
)

// encodeBatch makes the log entry for a batch.
func encodeBatch(b *berthv1.StoreBatch) ([]byte, error) {
	buf := make([]byte, 1, 1+proto.Size(b))
	buf[0] = entryStoreBatch
	out, err := proto.MarshalOptions{}.MarshalAppend(buf, b)
	if err != nil {
		return nil, fmt.Errorf("encode store batch: %w", err)
	}
	return out, nil
}

// fsm applies the log to the store.
type fsm struct {
	store  *store.MemoryStore
	log    *slog.Logger
	policy *snapPolicy // nil: snapshots only by raft's entry count
}

// Apply applies one committed entry. Its return value is the proposer's
// verdict: nil or the store's error for a batch that failed its checks.
func (f *fsm) Apply(l *raft.Log) any {
	if len(l.Data) == 0 {
		panic(fmt.Sprintf("raftstore: log entry %d is empty; the log is corrupt", l.Index))
	}
	if f.policy != nil {
		f.policy.applied(len(l.Data))
	}
	switch t := l.Data[0]; {
	case t == entryStoreBatch:
		var b berthv1.StoreBatch
		if err := proto.Unmarshal(l.Data[1:], &b); err != nil {
			panic(fmt.Sprintf("raftstore: log entry %d: decode store batch: %v; the log is corrupt", l.Index, err))
		}
		if err := f.store.Apply(l.Index, &b); err != nil {
			f.log.Debug("store batch rejected", "index", l.Index, "err", err)
			return err
		}
		return nil
	case t&entryIgnorable != 0:
		f.log.Warn("skipping raft entry of a type this version does not know (marked ignorable)", "index", l.Index, "type", t)
		return nil
	default:
		panic(fmt.Sprintf("raftstore: log entry %d has unknown type %d; this manager is older than the cluster's log: upgrade it", l.Index, t))
	}
}

// Snapshot captures the state; Persist writes it outside the apply path.
func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	if f.policy != nil {
		f.policy.captured()
	}
	return &fsmSnapshot{snap: f.store.Snapshot(), policy: f.policy}, nil
}

// Restore replaces the state with a persisted snapshot.
func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	if err := f.store.Restore(rc); err != nil {
		return fmt.Errorf("restore store snapshot: %w", err)
	}
	return nil
}

type fsmSnapshot struct {
	snap   *store.Snapshot
	policy *snapPolicy
}

// Persist streams the captured state into the sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	n, err := s.snap.WriteTo(sink)
	if err != nil {
		_ = sink.Cancel()
		return fmt.Errorf("persist snapshot at store index %d: %w", s.snap.Index(), err)
	}
	if err := sink.Close(); err != nil {
		return fmt.Errorf("close snapshot at store index %d: %w", s.snap.Index(), err)
	}
	if s.policy != nil {
		s.policy.persisted(n)
	}
	return nil
}

// Release frees nothing: a memdb snapshot is garbage collected.
func (s *fsmSnapshot) Release() {}
