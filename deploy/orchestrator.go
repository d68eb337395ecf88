package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// DefaultReaperHistory is how many finished tasks the reaper keeps per slot
// (per node for global services) when neither Config nor the cluster spec
// says otherwise; Docker Swarm keeps 5 as well.
const DefaultReaperHistory = 5

// Retry bounds for writes that failed for a reason other than a conflict.
const (
	minRetry = 100 * time.Millisecond
	maxRetry = 5 * time.Second
)

// Config configures an Orchestrator.
type Config struct {
	// Store is the cluster state; required.
	Store *store.MemoryStore
	// Now is the clock for restart delays and task timestamps (default
	// time.Now).
	Now func() time.Time
	// After returns a channel that receives once d has passed on the same
	// clock as Now (default time.After). Tests pass a fake clock's.
	After func(d time.Duration) <-chan time.Time
	// Log receives the orchestrator's logs (default: discarded).
	Log *slog.Logger
	// ReaperHistory is how many finished tasks to keep per slot (per node
	// for global services); 0 means DefaultReaperHistory. The cluster spec's
	// task_history_limit, when above 0, takes precedence.
	ReaperHistory int
}

// Orchestrator is the leader-only loop that reconciles services with their
// tasks: replicated and global orchestration, restart policy and task
// reaping. Create it with New and run it with Run while leading.
type Orchestrator struct {
	st      *store.MemoryStore
	now     func() time.Time
	after   func(time.Duration) <-chan time.Time
	log     *slog.Logger
	history int

	// due holds when each unit waiting out a restart delay is to be looked
	// at again; timer fires at the earliest of them.
	due     map[unit]time.Time
	timer   <-chan time.Time
	timerAt time.Time

	// held units wait out a retry backoff after a failed write.
	held    map[unit]bool
	backoff time.Duration
	retryCh <-chan time.Time
}

// New checks cfg and returns an Orchestrator.
func New(cfg Config) (*Orchestrator, error) {
	if cfg.Store == nil {
		return nil, errors.New("deploy: Config.Store is nil; pass the manager's store")
	}
	if cfg.ReaperHistory < 0 {
		return nil, fmt.Errorf("deploy: Config.ReaperHistory is %d; use 0 for the default (%d) or a positive count", cfg.ReaperHistory, DefaultReaperHistory)
	}
	o := &Orchestrator{
		st: cfg.Store, now: cfg.Now, after: cfg.After, log: cfg.Log, history: cfg.ReaperHistory,
		due: map[unit]time.Time{}, held: map[unit]bool{},
	}
	if o.now == nil {
		o.now = time.Now
	}
	if o.after == nil {
		o.after = time.After
	}
	if o.log == nil {
		o.log = slog.New(slog.DiscardHandler)
	}
	if o.history == 0 {
		o.history = DefaultReaperHistory
	}
	return o, nil
}

// Run reconciles every service from the current state, then follows store
// changes until ctx ends (it then returns nil). A watch that lags or a
// state restored from a snapshot makes it start over from a fresh view.
// It returns an error only when the store refuses writes for good (this
// manager is no longer the leader): the leader loops then stop together.
// Writes refused for other reasons are retried with a backoff. Run may be
// called again after it returns, but not from two goroutines at once.
func (o *Orchestrator) Run(ctx context.Context) error {
	return store.Follow(ctx, o.log, o.follow)
}

// follow runs one view-then-watch session: a full reconcile, then rounds
// driven by events, restart timers and retries.
func (o *Orchestrator) follow(ctx context.Context) error {
	w, err := o.st.ViewAndWatch(ctx, func(store.ReadTx) {},
		store.Only[*pb.Task](), store.Only[*pb.Service](), store.Only[*pb.Node](), store.Only[*pb.Cluster]())
	if err != nil {
		return fmt.Errorf("watch store: %w", err)
	}
	defer w.Close()
	// Timers and retries start afresh: the full reconcile below derives
	// them again from the state.
	o.due, o.timer, o.timerAt = map[unit]time.Time{}, nil, time.Time{}
	o.held, o.retryCh, o.backoff = map[unit]bool{}, nil, 0
	d := newDirty()
	d.all = true
	for {
		for !d.empty() {
			if err := o.round(ctx, d); err != nil {
				return err
			}
			o.drain(w, d)
		}
		select {
		case ev, ok := <-w.Events():
			if !ok {
				if err := w.Err(); err != nil {
					return err
				}
				return ctx.Err()
			}
			d.note(ev)
			o.drain(w, d)
		case <-o.timer:
			o.fireDue(d)
		case <-o.retryCh:
			o.releaseHeld(d)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// drain takes the events already queued, so one round covers them all.
func (o *Orchestrator) drain(w *store.Watcher, d *dirty) {
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return // the next blocking receive reports why
			}
			d.note(ev)
		default:
			return
		}
	}
}

// round plans every dirty unit against one view and writes the plans in
// one store batch. Units whose write could not be made are marked dirty
// again (at once after a conflict, after a backoff otherwise).
func (o *Orchestrator) round(ctx context.Context, d *dirty) error {
	now := o.now()
	var plans []plan
	o.st.View(func(tx store.ReadTx) {
		r := newRound(tx, now, o.history, o.log)
		plans = r.plan(d)
	})
	d.reset()
	var work []plan
	for _, p := range plans {
		if p.due.IsZero() {
			delete(o.due, p.u)
		} else {
			o.due[p.u] = p.due
		}
		if !p.empty() {
			work = append(work, p)
		}
	}
	o.armTimer(now)
	if len(work) == 0 {
		return nil
	}
	replan, hold, err := o.apply(ctx, work)
	for _, u := range replan {
		d.units[u] = true
	}
	for _, u := range hold {
		o.held[u] = true
	}
	if err == nil {
		if len(hold) > 0 {
			o.holdOff()
		} else {
			o.backoff = 0
		}
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, store.ErrNotLeader) {
		return fmt.Errorf("orchestrator: %w", err)
	}
	for _, p := range work {
		o.held[p.u] = true
	}
	if errors.Is(err, store.ErrSequenceConflict) {
		o.releaseHeld(d) // someone wrote in between: replan at once
		return nil
	}
	o.holdOff()
	o.log.Warn("orchestrator write failed; retrying", "err", err, "units", len(work), "retry_in", o.backoff)
	return nil
}

// holdOff schedules the release of held units after a growing backoff.
func (o *Orchestrator) holdOff() {
	if o.retryCh != nil {
		return
	}
	o.backoff = min(max(2*o.backoff, minRetry), maxRetry)
	o.retryCh = o.after(o.backoff)
}

// releaseHeld marks the units held for a retry dirty again.
func (o *Orchestrator) releaseHeld(d *dirty) {
	for u := range o.held {
		d.units[u] = true
	}
	clear(o.held)
	o.retryCh = nil
}

// armTimer points the timer at the earliest restart due, if it moved.
func (o *Orchestrator) armTimer(now time.Time) {
	var first time.Time
	for _, at := range o.due {
		if first.IsZero() || at.Before(first) {
			first = at
		}
	}
	if first.Equal(o.timerAt) {
		return
	}
	o.timerAt = first
	o.timer = nil
	if !first.IsZero() {
		o.timer = o.after(first.Sub(now))
	}
}

// fireDue marks the units whose restart delay has passed dirty.
func (o *Orchestrator) fireDue(d *dirty) {
	now := o.now()
	o.timer, o.timerAt = nil, time.Time{}
	for u, at := range o.due {
		if !at.After(now) {
			d.units[u] = true
			delete(o.due, u)
		}
	}
	o.armTimer(now)
}
