package store

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
)

// Backends that keep objects rather than a log (etcd) need three things
// of the store the Raft backend does not: to check a batch against the
// current state before they write it (their writes are guarded by the
// state's index, so a batch that passes here passes Apply everywhere),
// to name the object an action writes, and to load a snapshot made of
// objects with their versions.

// Check runs b's checks against the current state, as Apply would, and
// returns the index of that state. It changes nothing.
func (s *MemoryStore) Check(b *berthv1.StoreBatch) (uint64, error) {
	txn := s.db.Load().Txn(true)
	defer txn.Abort()
	index := readIndex(txn)
	for _, a := range b.GetActions() {
		// applyAction sets versions on the objects it inserts: give it
		// copies, the caller's batch is written as it is.
		if _, err := applyAction(txn, index, cloneAction(a)); err != nil {
			return index, err
		}
	}
	return index, nil
}

// ActionTarget names the table and the ID of the object a writes.
func ActionTarget(a *berthv1.StoreAction) (table, id string, err error) {
	t, o, err := unwrap(a)
	if err != nil {
		return "", "", err
	}
	return t.name, o.GetId(), nil
}

// Versioned is one object of a snapshot made of objects: a create action
// wrapping it, and its version (the index it was last written at).
type Versioned struct {
	Action  *berthv1.StoreAction
	Version uint64
}

// Reset replaces the whole state with objs at index, as Restore does with
// a snapshot stream: open watchers stop with ErrRestored and the
// changelog starts afresh at index. It takes ownership of the objects.
func (s *MemoryStore) Reset(index uint64, objs []Versioned) error {
	db := newDB()
	txn := db.Txn(true)
	for _, v := range objs {
		t, o, err := unwrap(v.Action)
		if err != nil {
			txn.Abort()
			return fmt.Errorf("reset: %w", err)
		}
		m := o.GetMeta()
		if m == nil {
			m = &berthv1.Meta{}
			t.setMeta(o, m)
		}
		m.Version = v.Version
		s.intern.object(o)
		if err := txn.Insert(t.name, o); err != nil {
			txn.Abort()
			return fmt.Errorf("reset: insert %s %s: %w", t.name, o.GetId(), err)
		}
	}
	if err := txn.Insert(tableIndex, &indexRow{Key: indexKey, Value: index}); err != nil {
		txn.Abort()
		return fmt.Errorf("reset: set index: %w", err)
	}
	txn.Commit()
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	s.db.Store(db)
	s.changes.reset(index)
	s.notifyApplied()
	s.log.Info("store loaded from a snapshot of objects", "index", index, "objects", len(objs))
	return nil
}

func cloneAction(a *berthv1.StoreAction) *berthv1.StoreAction {
	return proto.Clone(a).(*berthv1.StoreAction)
}
