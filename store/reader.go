package store

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// reader is what transactions and checks read: the committed state in
// memdb (memReader), or a writer's staged changes over it (staged).
type reader interface {
	// index is the store index of the state read.
	index() uint64
	// lookup returns the object of table t with that ID, or nil.
	lookup(t *table, id string) object
	// each calls fn for every object of t that by selects, in memdb's
	// order: by index key, then by ID.
	each(t *table, by By, fn func(object)) error
	// named returns the object of t whose unique name, lowered, is name.
	named(t *table, name string) (object, error)
}

// memReader reads a memdb transaction (read-only, or Apply's write).
type memReader struct {
	txn *memdb.Txn
}

func (m memReader) index() uint64 { return readIndex(m.txn) }

func readIndex(txn *memdb.Txn) uint64 {
	raw, err := txn.First(tableIndex, indexID, indexKey)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*indexRow).Value
}

func (m memReader) lookup(t *table, id string) object {
	raw, err := m.txn.First(t.name, indexID, id)
	if err != nil || raw == nil {
		return nil
	}
	return raw.(object)
}

func (m memReader) each(t *table, by By, fn func(object)) error {
	index, arg, prefix, err := by.query(t)
	if err != nil {
		return err
	}
	if prefix {
		index += "_prefix"
	}
	it, err := m.txn.Get(t.name, index, arg)
	if err != nil {
		return fmt.Errorf("find %s by %v: %w", t.name, by, err)
	}
	for raw := it.Next(); raw != nil; raw = it.Next() {
		fn(raw.(object))
	}
	return nil
}

func (m memReader) named(t *table, name string) (object, error) {
	raw, err := m.txn.First(t.name, indexName, name)
	if err != nil {
		return nil, fmt.Errorf("look up %s name %q: %w", t.name, name, err)
	}
	if raw == nil {
		return nil, nil
	}
	return raw.(object), nil
}

// keyFunc returns how table t computes the key of index, as schema()
// builds it; nil when t has no such index.
func (t *table) keyFunc(index string) func(object) (string, bool) {
	switch {
	case index == indexID:
		return idKey
	case index == indexName && t.uniqueName != nil:
		un := t.uniqueName
		return func(o object) (string, bool) { return lowerName(un(o)) }
	}
	return t.indexes[index]
}
