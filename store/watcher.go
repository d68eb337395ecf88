package store

import (
	"context"
	"sync"
)

// Watcher delivers store events on a channel; see MemoryStore.Watch.
type Watcher struct {
	c       *changelog
	from    uint64
	filters []Filter
	limit   int
	out     chan Event
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once

	mu      sync.Mutex
	pending []Event
	wake    chan struct{} // signalled when pending grows or the watcher fails
	err     error
}

func newWatcher(c *changelog, from uint64, filters []Filter, limit int) *Watcher {
	return &Watcher{
		c: c, from: from, filters: filters, limit: limit,
		out: make(chan Event, 64), stop: make(chan struct{}), done: make(chan struct{}),
		wake: make(chan struct{}, 1),
	}
}

// Events returns the channel of events. It is closed when the watcher
// stops; Err then says why.
func (w *Watcher) Events() <-chan Event { return w.out }

// Err returns why the watcher stopped: nil after Close or the end of its
// context, ErrWatcherLagged or ErrRestored otherwise (take a new snapshot).
func (w *Watcher) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close stops the watcher and waits for its goroutine to end.
func (w *Watcher) Close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// push queues events that pass the filters; called with the changelog lock.
func (w *Watcher) push(events []Event) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return
	}
	for _, e := range events {
		if e.Index > w.from && w.match(e) {
			w.pending = append(w.pending, e)
		}
	}
	if len(w.pending) > w.limit {
		w.pending = nil
		w.err = ErrWatcherLagged
	}
	w.signal()
}

// fail stops the watcher with err; called with the changelog lock.
func (w *Watcher) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
	w.pending = nil
	w.signal()
}

func (w *Watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *Watcher) match(e Event) bool {
	if len(w.filters) == 0 {
		return true
	}
	for _, f := range w.filters {
		if f(e) {
			return true
		}
	}
	return false
}

// take returns the queued events, or false when the watcher has failed.
func (w *Watcher) take() ([]Event, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return nil, false
	}
	evs := w.pending
	w.pending = nil
	return evs, true
}

// run moves queued events to the channel until the watcher stops.
func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	defer close(w.out)
	defer w.c.remove(w)
	for {
		evs, ok := w.take()
		if !ok {
			return
		}
		for _, e := range evs {
			select {
			case w.out <- e:
			case <-w.stop:
				return
			case <-ctx.Done():
				return
			}
		}
		if len(evs) > 0 {
			continue
		}
		select {
		case <-w.wake:
		case <-w.stop:
			return
		case <-ctx.Done():
			return
		}
	}
}
