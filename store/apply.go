package store

import (
	"context"
	"fmt"

	"github.com/hashicorp/go-memdb"

	berthv1 "berth/proto/berth/v1"
)

// Apply applies a committed batch at a log index, atomically: every action
// or none. Backends call it in log order on every member. A batch that fails
// a check (ErrExist, ErrNotFound, ErrNameConflict, ErrSequenceConflict)
// changes nothing, and every replica reaches the same verdict. Apply takes
// ownership of b's objects: it sets their versions and stores them.
func (s *MemoryStore) Apply(index uint64, b *berthv1.StoreBatch) error {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	return s.applyLocked(index, b)
}

func (s *MemoryStore) applyLocked(index uint64, b *berthv1.StoreBatch) error {
	s.intern.batch(b)
	txn := s.db.Load().Txn(true)
	events := make([]Event, 0, len(b.GetActions()))
	for _, a := range b.GetActions() {
		ev, err := applyAction(txn, index, a)
		if err != nil {
			txn.Abort()
			s.setIndex(index)
			return fmt.Errorf("apply entry %d: %w", index, err)
		}
		events = append(events, ev)
	}
	if err := txn.Insert(tableIndex, &indexRow{Key: indexKey, Value: index}); err != nil {
		txn.Abort()
		return fmt.Errorf("apply entry %d: set index: %w", index, err)
	}
	txn.Commit()
	at := s.now()
	for i := range events {
		events[i].Time = at
	}
	s.changes.publish(index, events)
	s.notifyApplied()
	return nil
}

// setIndex records that the entry at index was applied without changes
// (a batch that failed its checks), so the index follows the log.
func (s *MemoryStore) setIndex(index uint64) {
	txn := s.db.Load().Txn(true)
	if err := txn.Insert(tableIndex, &indexRow{Key: indexKey, Value: index}); err != nil {
		txn.Abort()
		s.log.Error("set store index", "index", index, "err", err)
		return
	}
	txn.Commit()
	s.notifyApplied()
}

// notifyApplied wakes WaitIndex callers.
func (s *MemoryStore) notifyApplied() {
	s.appliedMu.Lock()
	if s.applied != nil {
		close(s.applied)
		s.applied = nil
	}
	s.appliedMu.Unlock()
}

// WaitIndex waits until the store has applied the entry at index (for a
// consistent read on a follower: ask the leader for its index, wait for it
// here, then View).
func (s *MemoryStore) WaitIndex(ctx context.Context, index uint64) error {
	for {
		s.appliedMu.Lock()
		if s.applied == nil {
			s.applied = make(chan struct{})
		}
		ch := s.applied
		s.appliedMu.Unlock()
		if s.Index() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for store index %d (at %d): %w", index, s.Index(), ctx.Err())
		}
	}
}

func applyAction(txn *memdb.Txn, index uint64, a *berthv1.StoreAction) (Event, error) {
	t, o, err := unwrap(a)
	if err != nil {
		return Event{}, err
	}
	ev := Event{Index: index, Object: o}
	var cur object
	switch a.GetKind() {
	case berthv1.StoreAction_KIND_CREATE:
		ev.Kind = EventCreate
		err = checkCreate(memReader{txn}, t, o)
	case berthv1.StoreAction_KIND_UPDATE:
		ev.Kind = EventUpdate
		cur, err = checkUpdate(memReader{txn}, t, o)
		ev.Old = cur
	case berthv1.StoreAction_KIND_REMOVE:
		ev.Kind = EventDelete
		cur, err = checkDelete(memReader{txn}, t, o.GetId())
		ev.Object = cur
	default:
		err = fmt.Errorf("%s %s: unknown action kind %v: %w", t.name, o.GetId(), a.GetKind(), ErrInvalidObject)
	}
	if err != nil {
		return Event{}, err
	}
	if ev.Kind == EventDelete {
		return ev, txn.Delete(t.name, cur)
	}
	m := o.GetMeta()
	if m == nil {
		m = &berthv1.Meta{}
		t.setMeta(o, m)
	}
	m.Version = index
	if err := txn.Insert(t.name, o); err != nil {
		return Event{}, fmt.Errorf("insert %s %s: %w", t.name, o.GetId(), err)
	}
	return ev, nil
}
