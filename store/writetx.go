package store

import (
	"fmt"
	"time"

	"github.com/hashicorp/go-memdb"
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

// writeTx is a Tx over a scratch memdb write transaction that is never
// committed: it gives the writer read-your-writes and early errors, and
// records the ops that become the StoreBatch.
type writeTx struct {
	readTx
	db    *memdb.MemDB
	now   func() time.Time
	ops   []op
	bytes int
}

func newWriteTx(db *memdb.MemDB, now func() time.Time) *writeTx {
	return &writeTx{readTx: readTx{txn: db.Txn(true)}, db: db, now: now}
}

func (w *writeTx) abort() { w.txn.Abort() }

func (w *writeTx) record(kind berthv1.StoreAction_Kind, t *table, o object) error {
	if kind != berthv1.StoreAction_KIND_REMOVE {
		if err := w.txn.Insert(t.name, o); err != nil {
			return fmt.Errorf("stage %s %s: %w", t.name, o.GetId(), err)
		}
	}
	w.ops = append(w.ops, op{kind: kind, t: t, obj: o})
	w.bytes += proto.Size(o)
	return nil
}

func (w *writeTx) create(t *table, o object) error {
	if err := checkCreate(w.txn, t, o); err != nil {
		return err
	}
	c := proto.Clone(o).(object)
	ts := timestamppb.New(w.now())
	t.setMeta(c, &berthv1.Meta{CreatedAt: ts, UpdatedAt: ts})
	return w.record(berthv1.StoreAction_KIND_CREATE, t, c)
}

func (w *writeTx) update(t *table, o object) error {
	cur, err := checkUpdate(w.txn, t, o)
	if err != nil {
		return err
	}
	c := proto.Clone(o).(object)
	t.setMeta(c, &berthv1.Meta{
		Version:   cur.GetMeta().GetVersion(),
		CreatedAt: cur.GetMeta().GetCreatedAt(),
		UpdatedAt: timestamppb.New(w.now()),
	})
	return w.record(berthv1.StoreAction_KIND_UPDATE, t, c)
}

func (w *writeTx) remove(t *table, id string) error {
	cur, err := checkDelete(w.txn, t, id)
	if err != nil {
		return err
	}
	if err := w.txn.Delete(t.name, cur); err != nil {
		return fmt.Errorf("stage delete %s %s: %w", t.name, id, err)
	}
	return w.record(berthv1.StoreAction_KIND_REMOVE, t, cur)
}

// rollback drops the ops after the first n and rebuilds the scratch
// transaction from the ops kept. It runs only when a Batch callback fails.
func (w *writeTx) rollback(n int) {
	w.txn.Abort()
	w.txn = w.db.Txn(true)
	w.ops = w.ops[:n]
	w.bytes = 0
	for _, o := range w.ops {
		w.bytes += proto.Size(o.obj)
		if o.kind == berthv1.StoreAction_KIND_REMOVE {
			_ = w.txn.Delete(o.t.name, o.obj) // it existed when recorded
		} else {
			_ = w.txn.Insert(o.t.name, o.obj) // it was insertable when recorded
		}
	}
}

// batch folds the ops into one action per object, in first-touch order:
// create+update is a create, create+remove nothing, update+update one
// update against the first version read, remove+create an update.
func (w *writeTx) batch() *berthv1.StoreBatch {
	type key struct{ table, id string }
	merged := make([]*berthv1.StoreAction, 0, len(w.ops))
	pos := make(map[key]int, len(w.ops))
	kinds := make([]berthv1.StoreAction_Kind, 0, len(w.ops))
	for _, o := range w.ops {
		k := key{o.t.name, o.obj.GetId()}
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
