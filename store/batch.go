package store

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
)

// Batch runs cb, which calls b.Update many times; the writes go out in
// entries of bounded size (see WithMaxBatchBytes). Each b.Update is atomic,
// but consecutive calls may land in different entries.
//
// Entries commit in order, one at a time, and while one commits the next
// is staged: the caller's work overlaps the log's fsync and the apply.
// Each entry commits whole or fails whole. When one fails (or cb does),
// the entries before it stay written, nothing after it is proposed, and
// Batch returns the error; an entry's failure may surface at a later
// b.Update or at the end.
func (s *MemoryStore) Batch(ctx context.Context, cb func(*Batch) error) error {
	b := &Batch{s: s, ctx: ctx, tx: newWriteTx(memReader{s.db.Load().Txn(false)}, s.now)}
	defer b.wait() // also on a panic in cb: the entry in flight has an owner
	err := cb(b)
	if err == nil && b.err == nil {
		return b.flush(true)
	}
	if err != nil {
		_, ferr := b.wait()
		return errors.Join(err, ferr)
	}
	return b.err
}

// Batch collects many small writes; see MemoryStore.Batch.
type Batch struct {
	s      *MemoryStore
	ctx    context.Context // the Batch call's context, used only during it
	tx     *writeTx
	err    error
	flight *inflight // the entry being committed; nil when none
}

// inflight is an entry committing in the background.
type inflight struct {
	written map[objKey]bool // the objects it writes
	done    chan struct{}   // closed when index and err are set
	index   uint64
	err     error
}

// objKey names an object across tables.
type objKey struct{ table, id string }

// Update runs cb atomically within the batch: when cb fails its writes are
// dropped and its error returned; the batch goes on. After a failed entry
// every Update returns that error.
func (b *Batch) Update(cb func(Tx) error) error {
	if b.err != nil {
		return b.err
	}
	mark := len(b.tx.ops)
	if err := cb(b.tx); err != nil {
		b.tx.rollback(mark)
		return err
	}
	if b.tx.bytes >= b.s.maxBytes {
		if err := b.flush(false); err != nil {
			b.err = err
			return err
		}
	}
	return nil
}

// flush waits for the entry in flight, then commits the staged writes:
// the last entry synchronously, others in the background while the next
// is staged over them.
func (b *Batch) flush(last bool) error {
	prev, err := b.wait()
	if err != nil {
		return err
	}
	if len(b.tx.ops) == 0 {
		return nil
	}
	batch := b.tx.batch()
	if prev != nil {
		prev.rebase(batch)
	}
	if last {
		if _, err := b.s.commit(b.ctx, batch); err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		return nil
	}
	f := &inflight{written: written(batch), done: make(chan struct{})}
	if b.s.proposer == nil {
		// Applied here, the batch's objects get their versions set while
		// the next entry reads them: apply copies.
		batch = proto.Clone(batch).(*berthv1.StoreBatch)
	}
	go func() {
		defer close(f.done)
		f.index, f.err = b.s.commit(b.ctx, batch)
	}()
	b.flight = f
	// The next entry reads this one's writes over the latest state.
	layer := newStaged(memReader{b.s.db.Load().Txn(false)})
	layer.objs, layer.names = b.tx.st.objs, b.tx.st.names
	b.tx = newWriteTx(layer, b.s.now)
	return nil
}

// wait waits for the entry in flight, if any, and returns it once it
// committed.
func (b *Batch) wait() (*inflight, error) {
	f := b.flight
	if f == nil {
		return nil, nil
	}
	<-f.done
	b.flight = nil
	if f.err != nil {
		return nil, fmt.Errorf("batch: %w", f.err)
	}
	return f, nil
}

// rebase sets the version of next's updates to objects f wrote: they were
// staged over f's writes, before f's index (their version) was known.
func (f *inflight) rebase(next *berthv1.StoreBatch) {
	for _, a := range next.GetActions() {
		if a.GetKind() != berthv1.StoreAction_KIND_UPDATE {
			continue
		}
		t, o, err := unwrap(a)
		if err == nil && f.written[objKey{t.name, o.GetId()}] {
			o.GetMeta().Version = f.index
		}
	}
}

func written(b *berthv1.StoreBatch) map[objKey]bool {
	m := make(map[objKey]bool, len(b.GetActions()))
	for _, a := range b.GetActions() {
		if t, o, err := unwrap(a); err == nil {
			m[objKey{t.name, o.GetId()}] = true
		}
	}
	return m
}
