package assign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	pb "berth/proto/berth/v1"
	"berth/scheduler"
	"berth/store"
)

// DefaultBatchDelay is how long the loop gathers changes before a round
// when Config.BatchDelay is zero: long enough that a service of a thousand
// tasks lands in one round, short enough that nobody notices.
const DefaultBatchDelay = 25 * time.Millisecond

// maxRetryDelay bounds the wait before retrying a round whose write lost a
// race with another writer.
const maxRetryDelay = time.Second

// Config configures an Assigner.
type Config struct {
	// Store is the cluster state; required.
	Store *store.MemoryStore
	// Now stamps task status; time.Now when nil.
	Now func() time.Time
	// Log receives the loop's logs; discarded when nil.
	Log *slog.Logger
	// BatchDelay is the coalescing window: after the first change that
	// calls for a round, the loop gathers changes this long and then
	// places every pending task in one pass. DefaultBatchDelay when zero.
	BatchDelay time.Duration
	// Strategy is the cluster's default placement strategy. Spread (the
	// zero value) spreads tasks over nodes; binpack fills the fullest node
	// that fits first. A service that asks for binpack in its placement is
	// binpacked either way; with a binpack default every task is.
	Strategy pb.Placement_Strategy
}

// Assigner is the leader's scheduling loop; see the package comment.
type Assigner struct {
	store    *store.MemoryStore
	now      func() time.Time
	log      *slog.Logger
	delay    time.Duration
	strategy pb.Placement_Strategy

	// beforeCommit, when set (tests), runs between a round's decision and
	// its write: the seam to change the store under a decision.
	beforeCommit func(scheduler.Result)
}

// New checks cfg and returns an Assigner; Run does the work.
func New(cfg Config) (*Assigner, error) {
	if cfg.Store == nil {
		return nil, errors.New("assign: Config.Store is nil; pass the manager's store")
	}
	if cfg.BatchDelay < 0 {
		return nil, fmt.Errorf("assign: Config.BatchDelay is %s; use a positive duration, or 0 for the default %s", cfg.BatchDelay, DefaultBatchDelay)
	}
	if _, ok := pb.Placement_Strategy_name[int32(cfg.Strategy)]; !ok {
		return nil, fmt.Errorf("assign: Config.Strategy %d is unknown; use STRATEGY_SPREAD or STRATEGY_BINPACK", cfg.Strategy)
	}
	a := &Assigner{store: cfg.Store, now: cfg.Now, log: cfg.Log, delay: cfg.BatchDelay, strategy: cfg.Strategy}
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

// Run assigns pending tasks until ctx ends, then returns nil. It starts
// from a snapshot of the store, so it may run again after it returned (a
// new term of leadership). It returns an error when a write fails for
// another reason than a race with another writer, e.g. lost leadership.
// Run is not safe to call concurrently with itself.
func (a *Assigner) Run(ctx context.Context) error {
	if err := store.Follow(ctx, a.log, a.follow); err != nil {
		return fmt.Errorf("assign: %w", err)
	}
	return nil
}

// follow runs rounds from one snapshot and its watch until the watch ends.
func (a *Assigner) follow(ctx context.Context) error {
	st := newState()
	var loadErr error
	w, err := a.store.ViewAndWatch(ctx, func(tx store.ReadTx) { loadErr = st.load(tx) },
		store.Only[*pb.Node](), store.Only[*pb.Task]())
	if err != nil {
		return fmt.Errorf("watch store: %w", err)
	}
	defer w.Close()
	if loadErr != nil {
		return loadErr
	}
	a.log.Debug("snapshot taken", "nodes", len(st.nodes), "live", len(st.live), "pending", len(st.pending))

	l := &loop{a: a, st: st, w: w}
	l.due = true // place what the snapshot holds at once
	for {
		if l.due {
			l.due = false
			if err := l.drain(); err != nil {
				return err
			}
			if err := l.round(ctx); err != nil {
				return err
			}
		}
		var fire <-chan time.Time
		if l.timer != nil {
			fire = l.timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events():
			if !ok {
				return w.Err()
			}
			l.apply(ev)
		case <-fire:
			l.timer, l.due = nil, true
		}
	}
}

// loop is the state of one follow: the copy of the store and the timer of
// the next round.
type loop struct {
	a     *Assigner
	st    *state
	w     *store.Watcher
	timer *time.Timer // armed while a round is coming
	due   bool        // a round runs now
	retry time.Duration
}

// apply folds an event in and arms the round timer when it calls for one.
func (l *loop) apply(ev store.Event) {
	if l.st.apply(ev) && len(l.st.pending) > 0 {
		l.schedule(l.a.delay)
	}
}

// schedule arms the round timer unless it is armed already: the first
// change opens the window and later ones ride along.
func (l *loop) schedule(d time.Duration) {
	if l.timer == nil {
		l.timer = time.NewTimer(d)
	}
}

// drain folds in the events already delivered, so a round sees all of them.
func (l *loop) drain() error {
	for {
		select {
		case ev, ok := <-l.w.Events():
			if !ok {
				if err := l.w.Err(); err != nil {
					return err
				}
				return errors.New("store watch closed")
			}
			l.st.apply(ev)
		default:
			return nil
		}
	}
}

// round places every pending task and commits the result.
func (l *loop) round(ctx context.Context) error {
	if len(l.st.pending) == 0 {
		return nil
	}
	a := l.a
	start := a.now()
	in := l.st.input(a.strategy)
	res := scheduler.New(in.nodes, in.live).Place(in.pending)
	if a.beforeCommit != nil {
		a.beforeCommit(res)
	}
	out, err := a.commit(ctx, res)
	if err != nil {
		if ctx.Err() != nil || !retryable(err) {
			return fmt.Errorf("commit assignments: %w", err)
		}
		l.retry = min(max(2*l.retry, a.delay), maxRetryDelay)
		a.log.Warn("assignments lost a race with another writer; retrying", "err", err, "in", l.retry)
		l.schedule(l.retry)
		return nil
	}
	l.retry = 0
	for _, t := range out.written {
		l.st.putTask(t)
	}
	if out.bounced > 0 {
		// The store changed under the decision. Its events normally call
		// the next round; a change that frees nothing (another task taking
		// the room) would not, so call it here.
		l.schedule(a.delay)
	}
	a.log.Debug("placed pending tasks", "pending", len(in.pending), "assigned", out.assigned,
		"unplaced", len(res.Unplaced), "reasons_written", out.reasons, "bounced", out.bounced,
		"stale", out.stale, "took", a.now().Sub(start))
	return nil
}
