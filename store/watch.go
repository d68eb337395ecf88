package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// EventKind says what happened to an object.
type EventKind int

// Event kinds.
const (
	EventCreate EventKind = iota + 1
	EventUpdate
	EventDelete
)

func (k EventKind) String() string {
	switch k {
	case EventCreate:
		return "create"
	case EventUpdate:
		return "update"
	case EventDelete:
		return "delete"
	}
	return fmt.Sprintf("EventKind(%d)", int(k))
}

// Event is one applied change. Object is the new object (create, update) or
// the removed one (delete); Old is the previous object of an update. Both
// are stored objects: do not change them.
type Event struct {
	Index  uint64
	Kind   EventKind
	Object proto.Message
	Old    proto.Message
	// Time is when this store applied the change (a replayed entry gets
	// the time of its replay; objects carry their write time in meta).
	Time time.Time
}

// Filter selects events; a watch with several filters passes an event when
// any of them does.
type Filter func(Event) bool

// Only passes events about objects of type T, e.g. Only[*berthv1.Task]().
func Only[T proto.Message]() Filter {
	return func(e Event) bool { _, ok := e.Object.(T); return ok }
}

// commitEvents are the events of one applied entry.
type commitEvents struct {
	index  uint64
	events []Event
}

// changelog is a bounded log of recent changes plus the live watchers.
// Every change with index > start is held.
type changelog struct {
	mu       sync.Mutex
	commits  []commitEvents
	held     int // events held in commits
	max      int
	start    uint64
	watchers map[*Watcher]struct{}
}

func (c *changelog) publish(index uint64, events []Event) {
	if len(events) == 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commits = append(c.commits, commitEvents{index: index, events: events})
	c.held += len(events)
	for c.held > c.max && len(c.commits) > 1 {
		c.start = c.commits[0].index
		c.held -= len(c.commits[0].events)
		c.commits[0] = commitEvents{}
		c.commits = c.commits[1:]
	}
	for w := range c.watchers {
		w.push(events)
	}
}

// reset forgets all changes (the state was replaced at index) and closes
// every watcher with ErrRestored.
func (c *changelog) reset(index uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.commits, c.held, c.start = nil, 0, index
	for w := range c.watchers {
		w.fail(ErrRestored)
		delete(c.watchers, w)
	}
}

func (c *changelog) remove(w *Watcher) {
	c.mu.Lock()
	delete(c.watchers, w)
	c.mu.Unlock()
}

// Watch returns a watcher that first delivers every change applied after
// fromIndex (in order) and then follows live changes, with no gap and no
// duplicate. Pair it with a view: View, note tx.Index(), Watch from it (or
// use ViewAndWatch). When fromIndex is older than the changelog holds,
// Watch fails with ErrCompacted: take a new View and watch from its index.
// The watcher stops when ctx ends or Close is called.
func (s *MemoryStore) Watch(ctx context.Context, fromIndex uint64, filters ...Filter) (*Watcher, error) {
	c := &s.changes
	c.mu.Lock()
	defer c.mu.Unlock()
	if fromIndex < c.start {
		return nil, fmt.Errorf("watch from index %d, oldest kept is %d: %w", fromIndex, c.start, ErrCompacted)
	}
	w := newWatcher(c, fromIndex, filters, max(c.max, defaultWatcherQueueSize))
	for _, ce := range c.commits {
		if ce.index > fromIndex {
			w.push(ce.events)
		}
	}
	c.watchers[w] = struct{}{}
	go w.run(ctx)
	return w, nil
}

// WatchHeld is Watch from the oldest change the changelog still holds
// (the last DefaultChangelogSize or so): the bounded history of the
// store. from is the index it starts after; a from above 0 means earlier
// changes were dropped (or came with a snapshot).
func (s *MemoryStore) WatchHeld(ctx context.Context, filters ...Filter) (w *Watcher, from uint64, err error) {
	for {
		s.changes.mu.Lock()
		from = s.changes.start
		s.changes.mu.Unlock()
		w, err = s.Watch(ctx, from, filters...)
		if !errors.Is(err, ErrCompacted) {
			return w, from, err
		}
	}
}

// ViewAndWatch runs cb over a view and returns a watcher of every change
// after that view, atomically: nothing is missed or seen twice.
func (s *MemoryStore) ViewAndWatch(ctx context.Context, cb func(ReadTx), filters ...Filter) (*Watcher, error) {
	tx := &readTx{r: memReader{s.db.Load().Txn(false)}}
	cb(tx)
	return s.Watch(ctx, tx.Index(), filters...)
}
