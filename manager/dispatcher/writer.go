package dispatcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/store"
)

// maxWrites bounds the writes coalesced into one flush.
const maxWrites = 4096

// conflictRetries is how often a flush is retried when another writer
// changed an object it read (the batch re-reads and re-applies).
const conflictRetries = 3

// write is one atomic change queued for the next batched store write.
type write struct {
	fn   func(store.Tx) error
	done chan error // nil when nobody waits for the outcome
}

// enqueue hands w to the term's writer; false when the writer stopped.
func (d *Dispatcher) enqueue(t *term, w *write) bool {
	select {
	case t.writes <- w:
		return true
	case <-t.quit:
		return false
	}
}

// submit queues fn and waits until the batch holding it is written.
func (d *Dispatcher) submit(ctx context.Context, t *term, fn func(store.Tx) error) error {
	w := &write{fn: fn, done: make(chan error, 1)}
	if !d.enqueue(t, w) {
		return errStopped
	}
	select {
	case err := <-w.done:
		return toStatus(err)
	case <-t.quit:
		return errStopped
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

var errStopped = status.Error(codes.Unavailable, "this manager stopped leading; reconnect to the new leader")

// writer coalesces the writes queued within one BatchWindow into one store
// Batch (one Raft entry unless it exceeds the store's batch bounds).
func (d *Dispatcher) writer(ctx context.Context, t *term) error {
	defer close(t.quit)
	for {
		var first *write
		select {
		case <-ctx.Done():
			return nil
		case first = <-t.writes:
		}
		batch := []*write{first}
		timer := time.NewTimer(d.cfg.BatchWindow)
	collect:
		for len(batch) < maxWrites {
			select {
			case w := <-t.writes:
				batch = append(batch, w)
			case <-timer.C:
				break collect
			case <-ctx.Done():
				break collect
			}
		}
		timer.Stop()
		d.flush(ctx, batch)
	}
}

// flush writes a batch; each write is atomic on its own, and one that
// fails is dropped without failing the others.
func (d *Dispatcher) flush(ctx context.Context, batch []*write) {
	errs := make([]error, len(batch))
	var err error
	for range conflictRetries {
		err = d.cfg.Store.Batch(ctx, func(b *store.Batch) error {
			for i, w := range batch {
				errs[i] = b.Update(w.fn)
			}
			return nil
		})
		// A conflict, or a node removed after the batch was checked (its
		// write fails the whole entry): the retry re-checks each write and
		// drops only those that fail now.
		if !errors.Is(err, store.ErrSequenceConflict) && !errors.Is(err, store.ErrNodeRemoved) {
			break
		}
	}
	if err != nil {
		d.log.Warn("batched status write failed", "writes", len(batch), "err", err)
	}
	for i, w := range batch {
		e := errs[i]
		if e == nil {
			e = err
		}
		if w.done != nil {
			w.done <- e
		} else if e != nil && !errors.Is(e, err) {
			d.log.Warn("status write failed", "err", e)
		}
	}
}

// toStatus maps a store error to a gRPC status an agent acts on: it
// retries Unavailable and Unknown.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	switch {
	case errors.Is(err, store.ErrNotLeader):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, store.ErrOutcomeUnknown):
		return status.Error(codes.Unknown, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.Unavailable, fmt.Sprintf("write interrupted: %v", err))
	}
	return status.Error(codes.Internal, err.Error())
}
