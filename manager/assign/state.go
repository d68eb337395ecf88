package assign

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// isPending reports whether t waits for the loop to place it. A task
// without a network attachment waits for the address allocator first
// (overlay/allocator): every task joins at least the default network, and
// none may start before it has its addresses. A standalone container's
// network attachment (TaskSpec.attachment) is never placed: its node is
// the one that asked, and the allocator assigns it there.
func isPending(t *pb.Task) bool {
	return t.GetSpec().GetAttachment() == nil && t.GetStatus().GetState() == pb.TaskState_TASK_STATE_PENDING &&
		t.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING &&
		len(t.GetNetworks()) > 0
}

// holds reports whether t occupies its node: it was assigned there and has
// not finished. A task managers want stopped holds its node until its agent
// says it stopped (after draining its endpoints and the stop grace period),
// as swarmkit frees resources only past running: else a replacement could
// run beside it, publishing the same host port. The round and the
// write-time check must agree on this, or a task could bounce between them
// forever. Network attachments run no container and hold nothing.
func holds(t *pb.Task) bool {
	s := t.GetStatus().GetState()
	return t.GetNodeId() != "" && t.GetSpec().GetAttachment() == nil &&
		s >= pb.TaskState_TASK_STATE_ASSIGNED && s <= pb.TaskState_TASK_STATE_RUNNING
}

// state is the loop's copy of what placement reads: every node, the tasks
// that hold resources on them, and the pending tasks. Objects are the
// store's (immutable) ones, or clones the loop wrote itself.
type state struct {
	nodes   map[string]*pb.Node
	live    map[string]*pb.Task
	pending map[string]*pb.Task
}

func newState() *state {
	return &state{nodes: map[string]*pb.Node{}, live: map[string]*pb.Task{}, pending: map[string]*pb.Task{}}
}

// load fills s from a store view.
func (s *state) load(tx store.ReadTx) error {
	nodes, err := tx.FindNodes(store.All)
	if err != nil {
		return fmt.Errorf("read nodes: %w", err)
	}
	for _, n := range nodes {
		s.nodes[n.GetId()] = n
	}
	tasks, err := tx.FindTasks(store.All)
	if err != nil {
		return fmt.Errorf("read tasks: %w", err)
	}
	for _, t := range tasks {
		s.putTask(t)
	}
	return nil
}

// putTask files t under pending or live, or drops it, and reports where it
// was before.
func (s *state) putTask(t *pb.Task) (old *pb.Task, wasLive bool) {
	id := t.GetId()
	old, wasLive = s.live[id]
	if !wasLive {
		old = s.pending[id]
	}
	delete(s.live, id)
	delete(s.pending, id)
	switch {
	case isPending(t):
		s.pending[id] = t
	case holds(t):
		s.live[id] = t
	}
	return old, wasLive
}

// apply folds one store event into s and reports whether it may change
// where pending tasks go: a round is due when it does and tasks wait.
func (s *state) apply(ev store.Event) bool {
	switch o := ev.Object.(type) {
	case *pb.Node:
		old := s.nodes[o.GetId()]
		if ev.Kind == store.EventDelete {
			delete(s.nodes, o.GetId())
			return old != nil
		}
		s.nodes[o.GetId()] = o
		return old == nil || nodeChanged(old, o)
	case *pb.Task:
		return s.applyTask(ev.Kind, o)
	}
	return false
}

func (s *state) applyTask(kind store.EventKind, t *pb.Task) bool {
	id := t.GetId()
	if kind == store.EventDelete {
		_, wasLive := s.live[id]
		delete(s.live, id)
		delete(s.pending, id)
		return wasLive
	}
	known := s.live[id]
	if known == nil {
		known = s.pending[id]
	}
	// Task states only move forward. A task the loop assigned is filed as
	// assigned when the write returns; events from before that write may
	// still be on their way and must not make it pending again.
	if known != nil && t.GetStatus().GetState() < known.GetStatus().GetState() {
		return false
	}
	old, wasLive := s.putTask(t)
	switch {
	case isPending(t):
		// New work, or work whose placement changed; a pending task's own
		// status (the reason the loop wrote) changes nothing.
		return old == nil || !isPending(old) || !samePlacement(old, t)
	case holds(t):
		return false // it takes room; nothing waiting can gain from that
	default:
		return wasLive // it left its node and freed what it held
	}
}

// nodeChanged reports whether a node changed in a way placement reads.
func nodeChanged(a, b *pb.Node) bool {
	da, db := a.GetDescription(), b.GetDescription()
	return a.GetStatus().GetState() != b.GetStatus().GetState() ||
		a.GetSpec().GetAvailability() != b.GetSpec().GetAvailability() ||
		a.GetRole() != b.GetRole() ||
		da.GetHostname() != db.GetHostname() ||
		!proto.Equal(da.GetPlatform(), db.GetPlatform()) ||
		!proto.Equal(da.GetResources(), db.GetResources()) ||
		!maps.Equal(a.GetSpec().GetAnnotations().GetLabels(), b.GetSpec().GetAnnotations().GetLabels())
}

// samePlacement reports whether two versions of a pending task would be
// placed alike.
func samePlacement(a, b *pb.Task) bool {
	return a.GetNodeId() == b.GetNodeId() && a.GetServiceId() == b.GetServiceId() &&
		proto.Equal(a.GetSpec(), b.GetSpec()) && proto.Equal(a.GetEndpoint(), b.GetEndpoint())
}

// input is what one round hands the scheduler.
type input struct {
	nodes   []*pb.Node
	live    []*pb.Task
	pending []*pb.Task
}

// input lists s for the scheduler. With a binpack default, pending tasks
// that ask for no strategy (spread is the zero value) are binpacked.
func (s *state) input(strategy pb.Placement_Strategy) input {
	in := input{
		nodes:   slices.Collect(maps.Values(s.nodes)),
		live:    slices.Collect(maps.Values(s.live)),
		pending: make([]*pb.Task, 0, len(s.pending)),
	}
	for _, t := range s.pending {
		if strategy != pb.Placement_STRATEGY_SPREAD && t.GetSpec().GetPlacement().GetStrategy() == pb.Placement_STRATEGY_SPREAD {
			t = proto.Clone(t).(*pb.Task)
			if t.Spec == nil {
				t.Spec = &pb.TaskSpec{}
			}
			if t.Spec.Placement == nil {
				t.Spec.Placement = &pb.Placement{}
			}
			t.Spec.Placement.Strategy = strategy
		}
		in.pending = append(in.pending, t)
	}
	return in
}
