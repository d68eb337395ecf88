package store

import (
	"fmt"

	"github.com/hashicorp/go-memdb"
)

// indexRow is the single row of the index table: the store index of the
// last applied change, kept inside memdb so a read transaction sees the
// index that matches its data.
type indexRow struct {
	Key   string
	Value uint64
}

const indexKey = "store"

// keyIndexer indexes objects by a string key a function computes. It
// implements memdb's SingleIndexer and PrefixIndexer.
type keyIndexer struct {
	key func(object) (string, bool)
}

// FromObject returns the key of an object, NUL-terminated.
func (k keyIndexer) FromObject(raw any) (bool, []byte, error) {
	o, ok := raw.(object)
	if !ok {
		return false, nil, fmt.Errorf("index %T: not a stored object", raw)
	}
	s, ok := k.key(o)
	if !ok {
		return false, nil, nil
	}
	return true, append([]byte(s), 0), nil
}

// FromArgs builds the exact key from one string argument.
func (k keyIndexer) FromArgs(args ...any) ([]byte, error) {
	b, err := k.PrefixFromArgs(args...)
	if err != nil {
		return nil, err
	}
	return append(b, 0), nil
}

// PrefixFromArgs builds a key prefix from one string argument.
func (keyIndexer) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) != 1 {
		return nil, fmt.Errorf("index wants one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return nil, fmt.Errorf("index wants a string argument, got %T", args[0])
	}
	return []byte(s), nil
}

func idKey(o object) (string, bool) { return o.GetId(), o.GetId() != "" }

// schema builds the memdb schema of every table.
func schema() *memdb.DBSchema {
	s := &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableIndex: {
			Name: tableIndex,
			Indexes: map[string]*memdb.IndexSchema{
				indexID: {Name: indexID, Unique: true, Indexer: &memdb.StringFieldIndex{Field: "Key"}},
			},
		},
	}}
	for _, t := range allTables {
		ts := &memdb.TableSchema{Name: t.name, Indexes: map[string]*memdb.IndexSchema{
			indexID: {Name: indexID, Unique: true, Indexer: keyIndexer{idKey}},
		}}
		if t.uniqueName != nil {
			un := t.uniqueName
			ts.Indexes[indexName] = &memdb.IndexSchema{
				Name: indexName, Unique: true, AllowMissing: true,
				Indexer: keyIndexer{func(o object) (string, bool) { return lowerName(un(o)) }},
			}
		}
		for name, key := range t.indexes {
			ts.Indexes[name] = &memdb.IndexSchema{Name: name, AllowMissing: true, Indexer: keyIndexer{key}}
		}
		s.Tables[t.name] = ts
	}
	return s
}
