package store

import (
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "berth/proto/berth/v1"
)

// op is one write recorded by a writeTx, in call order.
type op struct {
	kind berthv1.StoreAction_Kind
	t    *table
	obj  object // the new object; for remove, the stored one
}

// writeTx is a Tx over the writer's staged changes (see staged): it gives
// the writer read-your-writes and early errors, and records the ops that
// become the StoreBatch. It holds no lock: another writer's change that
// lands first is caught by Apply's checks.
type writeTx struct {
	readTx
	st    *staged
	now   func() time.Time
	ops   []op
	bytes int
}

func newWriteTx(base reader, now func() time.Time) *writeTx {
	st := newStaged(base)
	return &writeTx{readTx: readTx{r: st}, st: st, now: now}
}

func (w *writeTx) record(kind berthv1.StoreAction_Kind, t *table, o object) {
	if kind == berthv1.StoreAction_KIND_REMOVE {
		w.st.put(t, o.GetId(), nil)
	} else {
		w.st.put(t, o.GetId(), o)
	}
	w.ops = append(w.ops, op{kind: kind, t: t, obj: o})
	w.bytes += proto.Size(o)
}

func (w *writeTx) create(t *table, o object) error {
	if err := checkCreate(w.st, t, o); err != nil {
		return err
	}
	c := proto.Clone(o).(object)
	ts := timestamppb.New(w.now())
	t.setMeta(c, &berthv1.Meta{CreatedAt: ts, UpdatedAt: ts})
	w.record(berthv1.StoreAction_KIND_CREATE, t, c)
	return nil
}

func (w *writeTx) update(t *table, o object) error {
	cur, err := checkUpdate(w.st, t, o)
	if err != nil {
		return err
	}
	c := proto.Clone(o).(object)
	t.setMeta(c, &berthv1.Meta{
		Version:   cur.GetMeta().GetVersion(),
		CreatedAt: cur.GetMeta().GetCreatedAt(),
		UpdatedAt: timestamppb.New(w.now()),
	})
	w.record(berthv1.StoreAction_KIND_UPDATE, t, c)
	return nil
}

func (w *writeTx) remove(t *table, id string) error {
	cur, err := checkDelete(w.st, t, id)
	if err != nil {
		return err
	}
	w.record(berthv1.StoreAction_KIND_REMOVE, t, cur)
	return nil
}

// rollback drops the ops after the first n and stages the kept ones again.
// It runs only when a Batch callback fails.
func (w *writeTx) rollback(n int) {
	w.st = newStaged(w.st.base)
	w.readTx.r = w.st
	w.ops = w.ops[:n]
	w.bytes = 0
	kept := w.ops
	w.ops = make([]op, 0, cap(kept))
	for _, o := range kept {
		w.record(o.kind, o.t, o.obj)
	}
}

// batch folds the ops into one action per object, in first-touch order:
// create+update is a create, create+remove nothing, update+update one
// update against the first version read, remove+create an update.
func (w *writeTx) batch() *berthv1.StoreBatch {
	merged := make([]*berthv1.StoreAction, 0, len(w.ops))
	pos := make(map[objKey]int, len(w.ops))
	kinds := make([]berthv1.StoreAction_Kind, 0, len(w.ops))
	for _, o := range w.ops {
		k := objKey{o.t.name, o.obj.GetId()}
		i, seen := pos[k]
		if !seen {
			pos[k] = len(merged)
			merged = append(merged, o.t.wrap(o.kind, o.obj))
			kinds = append(kinds, o.kind)
			continue
		}
		kind := foldKind(kinds[i], o.kind)
		kinds[i] = kind
		if kind == kindDropped {
			merged[i] = nil
			continue
		}
		obj := o.obj
		if prev := merged[i]; kind == berthv1.StoreAction_KIND_UPDATE && prev != nil {
			// Keep the version the first write read: that is what the
			// log must check against.
			_, first, _ := unwrap(prev)
			obj = proto.Clone(obj).(object)
			m := proto.Clone(obj.GetMeta()).(*berthv1.Meta)
			m.Version = first.GetMeta().GetVersion()
			o.t.setMeta(obj, m)
		}
		merged[i] = o.t.wrap(kind, obj)
	}
	b := &berthv1.StoreBatch{Actions: make([]*berthv1.StoreAction, 0, len(merged))}
	for _, a := range merged {
		if a != nil {
			b.Actions = append(b.Actions, a)
		}
	}
	return b
}

// kindDropped marks an object created and removed in the same batch.
const kindDropped berthv1.StoreAction_Kind = -1

func foldKind(prev, next berthv1.StoreAction_Kind) berthv1.StoreAction_Kind {
	const (
		create = berthv1.StoreAction_KIND_CREATE
		update = berthv1.StoreAction_KIND_UPDATE
		remove = berthv1.StoreAction_KIND_REMOVE
	)
	switch {
	case prev == kindDropped:
		return next // only a create can follow
	case prev == create && next == remove:
		return kindDropped
	case prev == create:
		return create
	case prev == remove && next == create:
		return update
	default:
		return next
	}
}
