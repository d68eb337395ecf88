package store

import (
	"cmp"
	"slices"
	"strings"
)

// staged is a writer's changes over a read-only view of the store: what
// the writer reads is the view with its own writes laid over it. The
// writes stay in plain maps; only Apply inserts into memdb, so each change
// is inserted once, and a writer holds no lock while it works.
type staged struct {
	base reader
	// objs holds the objects written, per table and ID; a nil object is
	// one deleted.
	objs map[*table]map[string]object
	// names maps a lowered unique name to the ID last staged with it.
	names map[*table]map[string]string
	// keys indexes the staged objects by an index's key, built on the
	// first exact Find by that index, so that a Find costs what it finds,
	// not every staged object: index key -> IDs staged with it (some may
	// have moved to another key since; readers check).
	keys map[indexRef]map[string]map[string]struct{}
}

// indexRef names one index of one table.
type indexRef struct {
	t     *table
	index string
}

func newStaged(base reader) *staged {
	return &staged{base: base, objs: map[*table]map[string]object{}, names: map[*table]map[string]string{}}
}

// byKey returns the IDs staged in t with key under index, building that
// index of the staged objects on first use.
func (s *staged) byKey(t *table, index string, key func(object) (string, bool), k string) map[string]struct{} {
	ref := indexRef{t, index}
	m, ok := s.keys[ref]
	if !ok {
		m = map[string]map[string]struct{}{}
		for id, o := range s.objs[t] {
			addKey(m, key, id, o)
		}
		if s.keys == nil {
			s.keys = map[indexRef]map[string]map[string]struct{}{}
		}
		s.keys[ref] = m
	}
	return m[k]
}

func addKey(m map[string]map[string]struct{}, key func(object) (string, bool), id string, o object) {
	if o == nil {
		return
	}
	k, ok := key(o)
	if !ok {
		return
	}
	ids := m[k]
	if ids == nil {
		ids = map[string]struct{}{}
		m[k] = ids
	}
	ids[id] = struct{}{}
}

// put stages o as the object with its ID, or a deletion when o is nil.
func (s *staged) put(t *table, id string, o object) {
	m := s.objs[t]
	if m == nil {
		m = map[string]object{}
		s.objs[t] = m
	}
	m[id] = o
	for ref, keys := range s.keys {
		if ref.t == t {
			addKey(keys, t.keyFunc(ref.index), id, o)
		}
	}
	if o == nil || t.uniqueName == nil {
		return
	}
	if name, ok := lowerName(t.uniqueName(o)); ok {
		n := s.names[t]
		if n == nil {
			n = map[string]string{}
			s.names[t] = n
		}
		n[name] = id
	}
}

func (s *staged) index() uint64 { return s.base.index() }

func (s *staged) lookup(t *table, id string) object {
	if o, ok := s.objs[t][id]; ok {
		return o
	}
	return s.base.lookup(t, id)
}

// named checks the writer's last object staged with the name, then the
// view's holder unless the writer changed or deleted it. Only the last
// one staged with a name can hold it: the checks refuse a second holder.
func (s *staged) named(t *table, name string) (object, error) {
	if id, ok := s.names[t][name]; ok {
		if o := s.objs[t][id]; o != nil && hasName(t, o, name) {
			return o, nil
		}
	}
	o, err := s.base.named(t, name)
	if err != nil || o == nil {
		return nil, err
	}
	if cur, ok := s.objs[t][o.GetId()]; ok && (cur == nil || !hasName(t, cur, name)) {
		return nil, nil
	}
	return o, nil
}

func hasName(t *table, o object, name string) bool {
	n, ok := lowerName(t.uniqueName(o))
	return ok && n == name
}

// each merges the view's results with the staged objects: a staged object
// replaces the view's one with its ID, and the merged results keep
// memdb's order (index key, then ID).
func (s *staged) each(t *table, by By, fn func(object)) error {
	mine := s.objs[t]
	if len(mine) == 0 {
		return s.base.each(t, by, fn)
	}
	index, arg, prefix, err := by.query(t)
	if err != nil {
		return err
	}
	key := t.keyFunc(index)
	var extra []keyed
	match := func(o object) {
		if o == nil || key == nil {
			return
		}
		if k, ok := key(o); ok && (k == arg || prefix && strings.HasPrefix(k, arg)) {
			extra = append(extra, keyed{key: k, o: o})
		}
	}
	if prefix {
		for _, o := range mine {
			match(o)
		}
	} else if key != nil {
		for id := range s.byKey(t, index, key, arg) {
			match(mine[id])
		}
	}
	skipMine := func(o object) bool { _, ok := mine[o.GetId()]; return ok }
	if len(extra) == 0 {
		return s.base.each(t, by, func(o object) {
			if !skipMine(o) {
				fn(o)
			}
		})
	}
	out := extra
	err = s.base.each(t, by, func(o object) {
		if !skipMine(o) {
			k, _ := key(o)
			out = append(out, keyed{key: k, o: o})
		}
	})
	if err != nil {
		return err
	}
	slices.SortFunc(out, func(a, b keyed) int {
		return cmp.Or(strings.Compare(a.key, b.key), strings.Compare(a.o.GetId(), b.o.GetId()))
	})
	for _, k := range out {
		fn(k.o)
	}
	return nil
}

// keyed is an object with its index key, for sorting merged results.
type keyed struct {
	key string
	o   object
}
