package deploy

import (
	"cmp"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/ids"
	pb "berth/proto/berth/v1"
)

const (
	running  = pb.TaskState_TASK_STATE_RUNNING
	shutdown = pb.TaskState_TASK_STATE_SHUTDOWN
	assigned = pb.TaskState_TASK_STATE_ASSIGNED
)

// unitState is everything decide needs about one unit.
type unitState struct {
	u     unit
	svc   *pb.Service // nil: the service was removed
	tasks []*pb.Task  // every task of the unit, live or not
	// keep: the unit may hold a live task (its slot is within replicas, or
	// its node may run the global service). create: it may get a new one
	// (a paused node keeps its global task but gets no new one).
	keep, create bool
	// gone: the unit is no more (removed service, slot above replicas,
	// removed node); its finished tasks keep no history.
	gone    bool
	node    func(id string) *pb.Node
	now     time.Time
	history int
}

// plan is what one unit needs written. stop and remove hold the tasks as
// read; the writer re-reads them.
type plan struct {
	u      unit
	create *pb.Task
	stop   []*pb.Task
	remove []*pb.Task
	// due is when the unit must be looked at again: a task waits out its
	// restart delay. Zero when nothing waits.
	due time.Time
}

func (p plan) empty() bool { return p.create == nil && len(p.stop) == 0 && len(p.remove) == 0 }

// decide plans one unit. It is a pure function of its input:
//
//   - A task the unit may not keep (slot above replicas, removed service,
//     global node no longer eligible) is shut down.
//   - A replicated task on a node that is down, drained or gone is shut
//     down and replaced at once, whatever the restart policy: losing a node
//     is not the task's own outcome.
//   - A task that finished (complete, failed, rejected, ...) while desired
//     running is replaced under the restart policy (see restartAt); until
//     then, or for good when the policy says no, it keeps the unit occupied,
//     so a completed task under condition none leaves its slot empty.
//   - Should two live tasks share a unit, the best one stays, except
//     during a start-first update (see startFirstPair): the new task, not
//     yet up, runs beside the old one until it is, and then the old one,
//     no longer the best, is shut down.
//   - An empty unit that may get a task gets one, in the same write that
//     shuts the old one down.
//   - The reaper deletes finished tasks beyond the history limit.
func decide(in unitState) plan {
	p := plan{u: in.u}
	var kept []*pb.Task
	for _, t := range in.tasks {
		if t.GetDesiredState() > running {
			continue
		}
		switch {
		case !in.keep:
			p.stop = append(p.stop, t)
		case finished(t) && t.GetStatus().GetState() != pb.TaskState_TASK_STATE_ORPHANED:
			ok, at := restartAt(t, in.tasks, in.svc.GetSpec().GetTask().GetRestart())
			switch {
			case !ok:
				kept = append(kept, t)
			case at.After(in.now):
				kept = append(kept, t)
				p.due = earliest(p.due, at)
			default:
				p.stop = append(p.stop, t)
			}
		case finished(t) || in.u.slot > 0 && nodeLost(t, in.node):
			p.stop = append(p.stop, t)
		default:
			kept = append(kept, t)
		}
	}
	if len(kept) > 1 && !startFirstPair(kept, in.svc) {
		slices.SortFunc(kept, better)
		p.stop = append(p.stop, kept[1:]...)
		kept = kept[:1]
		if !finished(kept[0]) {
			p.due = time.Time{}
		}
	}
	if len(kept) == 0 && in.create {
		p.create = newTask(in.svc, in.u, in.now)
	}
	p.remove = reap(in, p.stop)
	p.stop = slices.DeleteFunc(p.stop, func(t *pb.Task) bool { return slices.Contains(p.remove, t) })
	return p
}

// startFirstPair reports whether two live tasks are a start-first
// replacement in progress: one runs the service's current task spec and is
// not up yet, the other runs an older spec and has not finished. The
// updater made the pair; once the new task is up the best one (the newer)
// stays, so the orchestrator retires the old one even without an updater.
func startFirstPair(kept []*pb.Task, svc *pb.Service) bool {
	if len(kept) != 2 || svc == nil {
		return false
	}
	a, b := kept[0], kept[1]
	if !isCurrent(a, svc) {
		a, b = b, a
	}
	return isCurrent(a, svc) && !isCurrent(b, svc) && !up(a) && !finished(a) && !finished(b)
}

// finished reports whether a task's observed state is past running.
func finished(t *pb.Task) bool { return t.GetStatus().GetState() > running }

// nodeLost reports whether a task's node is down, drained or gone: it must
// run elsewhere. Unassigned tasks have lost nothing.
func nodeLost(t *pb.Task, node func(string) *pb.Node) bool {
	if t.GetNodeId() == "" {
		return false
	}
	n := node(t.GetNodeId())
	return n == nil || n.GetStatus().GetState() == pb.NodeStatus_STATE_DOWN ||
		n.GetSpec().GetAvailability() == pb.NodeSpec_AVAILABILITY_DRAIN
}

// better orders the tasks competing for a unit, best first: still going
// before finished, further along, newer spec, newer, then by ID.
func better(a, b *pb.Task) int {
	return cmp.Or(
		boolCmp(finished(a), finished(b)),
		cmp.Compare(b.GetStatus().GetState(), a.GetStatus().GetState()),
		cmp.Compare(b.GetSpecVersion(), a.GetSpecVersion()),
		b.GetMeta().GetCreatedAt().AsTime().Compare(a.GetMeta().GetCreatedAt().AsTime()),
		cmp.Compare(a.GetId(), b.GetId()),
	)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// newTask is a fresh attempt for a unit: pending, with the service's
// current task spec, waiting for the scheduler (which, for a global
// service, only checks the node the task names).
func newTask(s *pb.Service, u unit, now time.Time) *pb.Task {
	spec := s.GetSpec().GetTask()
	if spec == nil {
		spec = &pb.TaskSpec{}
	}
	t := &pb.Task{
		Id:           ids.New(),
		ServiceId:    s.GetId(),
		Slot:         u.slot,
		NodeId:       u.node,
		Spec:         proto.Clone(spec).(*pb.TaskSpec),
		SpecVersion:  s.GetSpecVersion(),
		DesiredState: running,
		Status: &pb.TaskStatus{
			State:     pb.TaskState_TASK_STATE_PENDING,
			Timestamp: timestamppb.New(now),
			Message:   "pending task scheduling",
		},
	}
	t.SpecNetworks = &pb.SpecNetworks{}
	for _, n := range s.GetSpec().GetNetworks() {
		t.SpecNetworks.Attachments = append(t.SpecNetworks.Attachments, proto.Clone(n).(*pb.NetworkAttachment))
	}
	t.Endpoint = taskEndpoint(s)
	return t
}

// taskEndpoint is the endpoint a new task carries: the service's allocated
// one when an allocator has filled it in, else the spec's published ports
// as they are (host-mode ports need no allocation).
func taskEndpoint(s *pb.Service) *pb.Endpoint {
	if s.GetEndpoint() != nil {
		return proto.Clone(s.GetEndpoint()).(*pb.Endpoint)
	}
	spec := s.GetSpec().GetEndpoint()
	if spec == nil {
		return nil
	}
	ep := &pb.Endpoint{Spec: proto.Clone(spec).(*pb.EndpointSpec)}
	for _, p := range spec.GetPorts() {
		ep.Ports = append(ep.Ports, proto.Clone(p).(*pb.PortConfig))
	}
	return ep
}
