// Package allocator is the leader's address loop: it gives every service
// a virtual IP on each network it joins and every new task an address on
// each, before the assign loop may place the task, and it frees them when
// tasks end or services go. A standalone container's attachment task
// (TaskSpec.attachment) gets an address on each network it names and is
// assigned to the node that asked for it. Its state lives in the store (Network.subnet,
// Service.endpoint.virtual_ips, Task.networks); the in-memory IPAM is
// rebuilt from it each term, so no address is given twice across leader
// changes and restarts.
package allocator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// DefaultBatchDelay is how long the loop gathers changes before a round
// when Config.BatchDelay is zero.
const DefaultBatchDelay = 10 * time.Millisecond

// maxRetryDelay bounds the wait before starting over after a write lost a
// race with another writer.
const maxRetryDelay = time.Second

// errStartOver ends one follow when a write lost a race: the loop rebuilds
// from a fresh view rather than guess what the store now holds.
var errStartOver = errors.New("a write lost a race with another writer")

// Config configures an Allocator.
type Config struct {
	// Store is the cluster state; required.
	Store *store.MemoryStore
	// ClusterID names the Cluster object whose pool networks come from.
	ClusterID string
	// Now stamps task status; time.Now when nil.
	Now func() time.Time
	// Log receives the loop's logs; discarded when nil.
	Log *slog.Logger
	// BatchDelay is the coalescing window of a round; DefaultBatchDelay
	// when zero.
	BatchDelay time.Duration
}

// Allocator is the leader's address loop; see the package comment.
type Allocator struct {
	store     *store.MemoryStore
	clusterID string
	now       func() time.Time
	log       *slog.Logger
	delay     time.Duration
}

// New checks cfg and returns an Allocator; Run does the work.
func New(cfg Config) (*Allocator, error) {
	if cfg.Store == nil {
		return nil, errors.New("allocator: Config.Store is nil; pass the manager's store")
	}
	if cfg.ClusterID == "" {
		return nil, errors.New("allocator: Config.ClusterID is empty; pass the cluster's ID")
	}
	if cfg.BatchDelay < 0 {
		return nil, fmt.Errorf("allocator: Config.BatchDelay is %s; use a positive duration, or 0 for the default %s", cfg.BatchDelay, DefaultBatchDelay)
	}
	a := &Allocator{store: cfg.Store, clusterID: cfg.ClusterID, now: cfg.Now, log: cfg.Log, delay: cfg.BatchDelay}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.delay == 0 {
		a.delay = DefaultBatchDelay
	}
	return a, nil
}

// Run allocates until ctx ends, then returns nil. It returns an error when
// a write fails for another reason than a race with another writer, e.g.
// lost leadership. Run is not safe to call concurrently with itself.
func (a *Allocator) Run(ctx context.Context) error {
	retry := time.Duration(0)
	for {
		err := store.Follow(ctx, a.log, a.follow)
		if !errors.Is(err, errStartOver) {
			if err != nil {
				return fmt.Errorf("allocator: %w", err)
			}
			return nil
		}
		retry = min(max(2*retry, a.delay), maxRetryDelay)
		a.log.Info("allocation write lost a race; starting over from a fresh view", "err", err, "in", retry)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(retry):
		}
	}
}

// follow runs rounds from one snapshot and its watch until the watch ends.
func (a *Allocator) follow(ctx context.Context) error {
	st := newState(a.log)
	var loadErr error
	w, err := a.store.ViewAndWatch(ctx, func(tx store.ReadTx) { loadErr = st.load(tx) },
		store.Only[*pb.Cluster](), store.Only[*pb.Network](), store.Only[*pb.Service](), store.Only[*pb.Task]())
	if err != nil {
		return fmt.Errorf("watch store: %w", err)
	}
	defer w.Close()
	if loadErr != nil {
		return loadErr
	}
	var timer *time.Timer
	due := true // allocate what the snapshot holds at once
	for {
		if due {
			due, timer = false, nil
			if err := drain(w, st); err != nil {
				return err
			}
			if err := a.round(ctx, st); err != nil {
				return err
			}
		}
		var fire <-chan time.Time
		if timer != nil {
			fire = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events():
			if !ok {
				return w.Err()
			}
			if st.apply(ev) && timer == nil {
				timer = time.NewTimer(a.delay)
			}
		case <-fire:
			due = true
		}
	}
}

// drain folds in the events already delivered, so a round sees all of them.
func drain(w *store.Watcher, st *state) error {
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				if err := w.Err(); err != nil {
					return err
				}
				return errors.New("store watch closed")
			}
			st.apply(ev)
		default:
			return nil
		}
	}
}
