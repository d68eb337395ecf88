package deploy

import (
	"log/slog"
	"time"

	pb "berth/proto/berth/v1"
	"berth/scheduler"
	"berth/store"
)

// round gathers the units a dirty set touches from one read view and plans
// each of them once.
type round struct {
	tx      store.ReadTx
	now     time.Time
	history int
	log     *slog.Logger

	services map[string]*serviceInfo
	globals  []*pb.Service // global services, loaded on first use
	loaded   bool
	covered  map[unit]bool
	plans    []plan
}

// serviceInfo is a service as the round sees it; svc is nil once removed.
type serviceInfo struct {
	svc         *pb.Service
	constraints []scheduler.Constraint
	badPlace    bool // constraints do not parse: start nothing new
}

func newRound(tx store.ReadTx, now time.Time, history int, log *slog.Logger) *round {
	if cl, _ := tx.FindClusters(store.All); len(cl) > 0 {
		if n := cl[0].GetSpec().GetTaskHistoryLimit(); n > 0 {
			history = int(n)
		}
	}
	return &round{tx: tx, now: now, history: history, log: log,
		services: map[string]*serviceInfo{}, covered: map[unit]bool{}}
}

// plan plans every unit d touches.
func (r *round) plan(d *dirty) []plan {
	if d.all {
		r.markAll(d)
	}
	for id := range d.services {
		r.planService(id)
	}
	for id := range d.nodes {
		r.planNode(id)
	}
	for u := range d.units {
		r.planUnit(u)
	}
	return r.plans
}

// markAll marks every service dirty, and the services of all tasks, so
// tasks of services removed while no leader watched are cleaned up too.
func (r *round) markAll(d *dirty) {
	svcs, err := r.tx.FindServices(store.All)
	if err != nil {
		r.log.Error("list services", "err", err)
	}
	for _, s := range svcs {
		d.services[s.GetId()] = true
	}
	tasks, err := r.tx.FindTasks(store.All)
	if err != nil {
		r.log.Error("list tasks", "err", err)
	}
	for _, t := range tasks {
		d.services[t.GetServiceId()] = true
	}
}

func (r *round) service(id string) *serviceInfo {
	if si, ok := r.services[id]; ok {
		return si
	}
	si := &serviceInfo{svc: r.tx.GetService(id)}
	if si.svc.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL {
		cs, err := scheduler.ParseConstraints(si.svc.GetSpec().GetTask().GetPlacement().GetConstraints())
		if err != nil {
			r.log.Error("global service has bad constraints; leaving its tasks as they are", "service", id, "err", err)
			si.badPlace = true
		}
		si.constraints = cs
	}
	r.services[id] = si
	return si
}

func (r *round) globalServices() []*pb.Service {
	if !r.loaded {
		r.loaded = true
		all, err := r.tx.FindServices(store.All)
		if err != nil {
			r.log.Error("list services", "err", err)
		}
		for _, s := range all {
			if s.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL {
				r.globals = append(r.globals, s)
			}
		}
	}
	return r.globals
}

// planService plans every unit of a service: its slots 1..replicas, or
// every node for a global service, plus every unit that has tasks.
func (r *round) planService(id string) {
	si := r.service(id)
	tasks, err := r.tx.FindTasks(store.ByServiceID(id))
	if err != nil {
		r.log.Error("list tasks of service", "service", id, "err", err)
		return
	}
	groups := map[unit][]*pb.Task{}
	for _, t := range tasks {
		u := unitOf(t)
		groups[u] = append(groups[u], t)
	}
	switch {
	case si.svc == nil:
	case si.svc.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL:
		nodes, err := r.tx.FindNodes(store.All)
		if err != nil {
			r.log.Error("list nodes", "err", err)
		}
		for _, n := range nodes {
			u := unit{service: id, node: n.GetId()}
			groups[u] = groups[u] // nil when the node has no task yet
		}
	default:
		for slot := uint64(1); slot <= replicas(si.svc); slot++ {
			u := unit{service: id, slot: slot}
			groups[u] = groups[u]
		}
	}
	for u, ts := range groups {
		r.planTasks(u, ts)
	}
}

// planNode plans the units of every task on a node, and the node's unit of
// every global service.
func (r *round) planNode(id string) {
	tasks, err := r.tx.FindTasks(store.ByNodeID(id))
	if err != nil {
		r.log.Error("list tasks of node", "node", id, "err", err)
	}
	for _, t := range tasks {
		r.planUnit(unitOf(t))
	}
	for _, s := range r.globalServices() {
		r.planUnit(unit{service: s.GetId(), node: id})
	}
}

// planUnit reads a unit's tasks and plans it.
func (r *round) planUnit(u unit) {
	if r.covered[u] {
		return
	}
	by := store.BySlot(u.service, u.slot)
	if u.slot == 0 {
		by = store.ByServiceNode(u.service, u.node)
	}
	tasks, err := r.tx.FindTasks(by)
	if err != nil {
		r.log.Error("list tasks of unit", "service", u.service, "slot", u.slot, "node", u.node, "err", err)
		return
	}
	r.planTasks(u, tasks)
}

// planTasks decides what a unit needs, once per round.
func (r *round) planTasks(u unit, tasks []*pb.Task) {
	if r.covered[u] {
		return
	}
	r.covered[u] = true
	if u.service == "" {
		r.plans = append(r.plans, decideAttachments(u, tasks, r.tx.GetNode))
		return
	}
	si := r.service(u.service)
	in := unitState{u: u, svc: si.svc, tasks: tasks, now: r.now, node: r.tx.GetNode, history: r.history}
	in.keep, in.create, in.gone = r.wanted(u, si)
	// Every unit gets a plan, empty or not: that also clears a restart due
	// the unit no longer waits for.
	r.plans = append(r.plans, decide(in))
}

// wanted says whether a unit may keep a live task, whether it may get a new
// one, and whether it is gone for good (removed service, slot above
// replicas, node removed from the cluster), so it keeps no history.
func (r *round) wanted(u unit, si *serviceInfo) (keep, create, gone bool) {
	s := si.svc
	if s == nil {
		return false, false, true
	}
	if s.GetSpec().GetMode() != pb.ServiceMode_SERVICE_MODE_GLOBAL {
		ok := u.slot >= 1 && u.slot <= replicas(s)
		return ok, ok, !ok
	}
	n := r.tx.GetNode(u.node)
	if u.slot != 0 || n == nil {
		return false, false, true
	}
	st, av := n.GetStatus().GetState(), n.GetSpec().GetAvailability()
	keep = st != pb.NodeStatus_STATE_DOWN && av != pb.NodeSpec_AVAILABILITY_DRAIN
	if si.badPlace {
		return keep, false, false // run what runs, start nothing new
	}
	keep = keep && scheduler.MatchesAll(si.constraints, n)
	return keep, keep && st == pb.NodeStatus_STATE_READY && av == pb.NodeSpec_AVAILABILITY_ACTIVE, false
}

// replicas is a replicated service's task count; unset means 1.
func replicas(s *pb.Service) uint64 {
	if s.GetSpec().Replicas == nil {
		return 1
	}
	return uint64(max(s.GetSpec().GetReplicas(), 0))
}
