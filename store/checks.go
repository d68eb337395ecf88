package store

import "fmt"

// The checks below run twice for every write: once against the writer's
// staged changes (to fail early, before anything is proposed) and once when
// the batch is applied in log order (the authority: every replica reaches
// the same verdict, so state never diverges).

// checkCreate fails when the ID is taken or the name is used, and for a
// node whose ID was removed.
func checkCreate(r reader, t *table, o object) error {
	if o.GetId() == "" {
		return fmt.Errorf("create %s: empty ID: %w", t.name, ErrInvalidObject)
	}
	if r.lookup(t, o.GetId()) != nil {
		return fmt.Errorf("create %s %s: %w", t.name, o.GetId(), ErrExist)
	}
	if t == nodes && r.lookup(removedNodes, o.GetId()) != nil {
		return fmt.Errorf("create %s %s: %w", t.name, o.GetId(), ErrNodeRemoved)
	}
	return checkName(r, t, o)
}

// checkUpdate fails when the object is missing, was changed since the
// caller read it, or takes a name in use. It returns the stored object.
func checkUpdate(r reader, t *table, o object) (object, error) {
	cur := r.lookup(t, o.GetId())
	if cur == nil {
		return nil, fmt.Errorf("update %s %s: %w", t.name, o.GetId(), ErrNotFound)
	}
	if have, want := o.GetMeta().GetVersion(), cur.GetMeta().GetVersion(); have != want {
		return nil, fmt.Errorf("update %s %s: version %d, stored %d: %w", t.name, o.GetId(), have, want, ErrSequenceConflict)
	}
	return cur, checkName(r, t, o)
}

// checkDelete fails when the object is missing; it returns the stored one.
func checkDelete(r reader, t *table, id string) (object, error) {
	cur := r.lookup(t, id)
	if cur == nil {
		return nil, fmt.Errorf("delete %s %s: %w", t.name, id, ErrNotFound)
	}
	return cur, nil
}

// checkName fails when another object of the table has o's name.
func checkName(r reader, t *table, o object) error {
	if t.uniqueName == nil {
		return nil
	}
	name, ok := lowerName(t.uniqueName(o))
	if !ok {
		return nil
	}
	other, err := r.named(t, name)
	if err != nil {
		return err
	}
	if other != nil && other.GetId() != o.GetId() {
		return fmt.Errorf("%s name %q is used by %s: %w", t.name, t.uniqueName(o), other.GetId(), ErrNameConflict)
	}
	return nil
}
