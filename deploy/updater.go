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

// Updater is the leader-only loop that rolls changed task specs out over a
// service's tasks under its update policy, pauses or rolls back on
// failure, and keeps the service's update status. Like the Orchestrator
// it is level-triggered: every decision comes from the stored service and
// tasks (which units run the current spec, which of the update's tasks
// failed), so a new leader goes on where the old one was and updates no
// unit twice. Only the delay between units and the final monitor period
// run from when this Updater first saw a task up: a new leader waits them
// out again rather than shortening them.
type Updater struct {
	st    *store.MemoryStore
	now   func() time.Time
	after func(time.Duration) <-chan time.Time
	log   *slog.Logger

	upSince map[string]map[string]time.Time // service → task → first seen up
	due     map[string]time.Time            // service → when to look again
	timer   <-chan time.Time
	timerAt time.Time
	backoff time.Duration
	retryCh <-chan time.Time
	held    map[string]bool
}

// NewUpdater checks cfg and returns an Updater (ReaperHistory is unused).
func NewUpdater(cfg Config) (*Updater, error) {
	if cfg.Store == nil {
		return nil, errors.New("deploy: Config.Store is nil; pass the manager's store")
	}
	u := &Updater{st: cfg.Store, now: cfg.Now, after: cfg.After, log: cfg.Log}
	if u.now == nil {
		u.now = time.Now
	}
	if u.after == nil {
		u.after = time.After
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	return u, nil
}

// Run rolls updates out until ctx ends (it then returns nil). It returns an
// error only when the store refuses writes for good (not the leader).
func (u *Updater) Run(ctx context.Context) error {
	return store.Follow(ctx, u.log, u.follow)
}

func (u *Updater) follow(ctx context.Context) error {
	w, err := u.st.ViewAndWatch(ctx, func(store.ReadTx) {}, store.Only[*pb.Task](), store.Only[*pb.Service](), store.Only[*pb.Node]())
	if err != nil {
		return fmt.Errorf("watch store: %w", err)
	}
	defer w.Close()
	u.upSince, u.due, u.held = map[string]map[string]time.Time{}, map[string]time.Time{}, map[string]bool{}
	u.timer, u.timerAt, u.retryCh, u.backoff = nil, time.Time{}, nil, 0
	d := map[string]bool{}
	all := true
	for {
		for all || len(d) > 0 {
			if err := u.round(ctx, d, all); err != nil {
				return err
			}
			all = false
			all = u.drain(w, d) || all
		}
		select {
		case ev, ok := <-w.Events():
			if !ok {
				if err := w.Err(); err != nil {
					return err
				}
				return ctx.Err()
			}
			all = u.note(ev, d)
			all = u.drain(w, d) || all
		case <-u.timer:
			u.fireDue(d)
		case <-u.retryCh:
			for id := range u.held {
				d[id] = true
			}
			clear(u.held)
			u.retryCh = nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// note marks what an event touches; a node change touches every service
// (global units come and go with nodes), which it reports.
func (u *Updater) note(ev store.Event, d map[string]bool) bool {
	switch o := ev.Object.(type) {
	case *pb.Task:
		if o.GetServiceId() != "" { // attachments have none and roll nothing
			d[o.GetServiceId()] = true
		}
	case *pb.Service:
		d[o.GetId()] = true
	case *pb.Node:
		old, _ := ev.Old.(*pb.Node)
		return ev.Kind != store.EventUpdate || nodeChanged(old, o)
	}
	return false
}

func (u *Updater) drain(w *store.Watcher, d map[string]bool) bool {
	all := false
	for {
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return all
			}
			all = u.note(ev, d) || all
		default:
			return all
		}
	}
}

// round plans the dirty services (all of them when all) on one view and
// writes the plans in one batch.
func (u *Updater) round(ctx context.Context, d map[string]bool, all bool) error {
	now := u.now()
	var plans []rolloutPlan
	u.st.View(func(tx store.ReadTx) {
		if all {
			svcs, err := tx.FindServices(store.All)
			if err != nil {
				u.log.Error("list services", "err", err)
			}
			for _, s := range svcs {
				d[s.GetId()] = true
			}
		}
		for id := range d {
			if p, ok := u.plan(tx, id, now); ok {
				plans = append(plans, p)
			}
		}
	})
	clear(d)
	u.armTimer(now)
	if len(plans) == 0 {
		return nil
	}
	err := u.apply(ctx, plans)
	switch {
	case err == nil:
		u.backoff = 0
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, store.ErrNotLeader):
		return fmt.Errorf("updater: %w", err)
	case errors.Is(err, store.ErrSequenceConflict):
		for _, p := range plans {
			d[p.service] = true
		}
		return nil
	}
	for _, p := range plans {
		u.held[p.service] = true
	}
	if u.retryCh == nil {
		u.backoff = min(max(2*u.backoff, minRetry), maxRetry)
		u.retryCh = u.after(u.backoff)
	}
	u.log.Warn("updater write failed; retrying", "err", err, "services", len(plans), "retry_in", u.backoff)
	return nil
}

// plan reads one service and plans its rollout; false when there is
// nothing to write.
func (u *Updater) plan(tx store.ReadTx, id string, now time.Time) (rolloutPlan, bool) {
	delete(u.due, id)
	svc := tx.GetService(id)
	if svc == nil {
		delete(u.upSince, id)
		return rolloutPlan{}, false
	}
	tasks, err := tx.FindTasks(store.ByServiceID(id))
	if err != nil {
		u.log.Error("list tasks of service", "service", id, "err", err)
		return rolloutPlan{}, false
	}
	seen := u.noteUp(id, tasks, now)
	in := rollout{svc: svc, now: now, units: u.units(tx, svc, tasks),
		upSince: func(task string) time.Time { return seen[task] }}
	p := planRollout(in)
	if !p.due.IsZero() {
		u.due[id] = p.due
	}
	return p, !p.empty()
}

// noteUp records when tasks were first seen up and forgets tasks gone.
func (u *Updater) noteUp(service string, tasks []*pb.Task, now time.Time) map[string]time.Time {
	prev := u.upSince[service]
	seen := make(map[string]time.Time, len(tasks))
	for _, t := range tasks {
		if at, ok := prev[t.GetId()]; ok {
			seen[t.GetId()] = at
		} else if up(t) {
			seen[t.GetId()] = now
		}
	}
	u.upSince[service] = seen
	return seen
}

// units groups a service's tasks by unit, keeping the units the service
// may still hold: slots up to replicas, nodes that can run a task.
func (u *Updater) units(tx store.ReadTx, svc *pb.Service, tasks []*pb.Task) []unitTasks {
	groups := map[unit][]*pb.Task{}
	for _, t := range tasks {
		groups[unitOf(t)] = append(groups[unitOf(t)], t)
	}
	global := svc.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL
	var out []unitTasks
	for un, ts := range groups {
		if !global && (un.slot < 1 || un.slot > replicas(svc)) {
			continue
		}
		if global && !nodeRuns(tx.GetNode(un.node)) {
			continue
		}
		out = append(out, unitTasks{u: un, tasks: ts})
	}
	orderUnits(out)
	return out
}

// nodeRuns reports whether a node may get a new task: ready and active.
func nodeRuns(n *pb.Node) bool {
	return n != nil && n.GetStatus().GetState() == pb.NodeStatus_STATE_READY &&
		n.GetSpec().GetAvailability() == pb.NodeSpec_AVAILABILITY_ACTIVE
}

// armTimer points the timer at the earliest due, if it moved.
func (u *Updater) armTimer(now time.Time) {
	var first time.Time
	for _, at := range u.due {
		first = earliest(first, at)
	}
	if first.Equal(u.timerAt) {
		return
	}
	u.timerAt, u.timer = first, nil
	if !first.IsZero() {
		u.timer = u.after(first.Sub(now))
	}
}

func (u *Updater) fireDue(d map[string]bool) {
	now := u.now()
	u.timer, u.timerAt = nil, time.Time{}
	for id, at := range u.due {
		if !at.After(now) {
			d[id] = true
			delete(u.due, id)
		}
	}
	u.armTimer(now)
}
