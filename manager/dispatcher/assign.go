package dispatcher

import (
	"log/slog"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// assigned says whether a node's agent must hold task t: it is placed on
// the node (status ASSIGNED or later, so the scheduler has checked that
// it fits) and either should run or still runs, so that the agent stops it.
// A task that has both stopped and should stop leaves the node.
func assigned(t *pb.Task, node string) bool {
	if t == nil || t.GetNodeId() != node || t.GetStatus().GetState() < pb.TaskState_TASK_STATE_ASSIGNED {
		return false
	}
	return t.GetDesiredState() <= pb.TaskState_TASK_STATE_RUNNING || t.GetStatus().GetState() <= pb.TaskState_TASK_STATE_RUNNING
}

// sameAssignment says whether a and b differ only in what the agent itself
// reported (status) or store bookkeeping (meta): such changes are not
// echoed back to the agent.
func sameAssignment(a, b *pb.Task) bool {
	a, b = proto.Clone(a).(*pb.Task), proto.Clone(b).(*pb.Task)
	a.Status, a.Meta, b.Status, b.Meta = nil, nil, nil, nil
	return proto.Equal(a, b)
}

// assignSet is what one session has sent its agent: the node's tasks as
// last sent, and the secrets and configs whose data the agent holds.
type assignSet struct {
	node  string
	open  func([]byte) ([]byte, error)
	log   *slog.Logger
	tasks map[string]*pb.Task
	files map[fileKey]bool
}

func newAssignSet(node string, open func([]byte) ([]byte, error), log *slog.Logger) *assignSet {
	return &assignSet{node: node, open: open, log: log}
}

// full resets the set to the node's tasks in tx and returns the complete
// assignment: secret and config data first, then tasks.
func (a *assignSet) full(tx store.ReadTx) []*pb.AssignmentChange {
	a.tasks, a.files = map[string]*pb.Task{}, map[fileKey]bool{}
	ts, err := tx.FindTasks(store.ByNodeID(a.node))
	if err != nil {
		a.log.Error("list the node's tasks", "err", err)
	}
	for _, t := range ts {
		if assigned(t, a.node) {
			a.tasks[t.GetId()] = t
		}
	}
	out := a.fileChanges(tx)
	for _, id := range slices.Sorted(maps.Keys(a.tasks)) {
		out = append(out, a.update(a.tasks[id]))
	}
	return out
}

// changes folds the latest version of each changed task (nil: deleted)
// into the set and returns what the agent must be told: secret and config
// data it now needs first, then task updates and removals, then secrets
// and configs no task needs any more.
func (a *assignSet) changes(tx store.ReadTx, dirty map[string]*pb.Task) []*pb.AssignmentChange {
	var tasks []*pb.AssignmentChange
	for _, id := range slices.Sorted(maps.Keys(dirty)) {
		t := dirty[id]
		prev, had := a.tasks[id]
		switch {
		case assigned(t, a.node):
			a.tasks[id] = t
			if !had || !sameAssignment(prev, t) {
				tasks = append(tasks, a.update(t))
			}
		case had:
			delete(a.tasks, id)
			tasks = append(tasks, &pb.AssignmentChange{
				Action: pb.AssignmentChange_ACTION_REMOVE,
				Item:   &pb.AssignmentChange_Task{Task: &pb.Task{Id: id}},
			})
		}
	}
	var data, removed []*pb.AssignmentChange
	for _, c := range a.fileChanges(tx) {
		if c.GetAction() == pb.AssignmentChange_ACTION_REMOVE {
			removed = append(removed, c)
		} else {
			data = append(data, c)
		}
	}
	return slices.Concat(data, tasks, removed)
}

// stale forgets that the agent holds a secret's current data (it changed).
func (a *assignSet) stale(secretID string) bool {
	key := fileKey{"secret", secretID}
	if !a.files[key] {
		return false
	}
	delete(a.files, key)
	return true
}

// update sends task t to the agent, with its registry password opened.
func (a *assignSet) update(t *pb.Task) *pb.AssignmentChange {
	return &pb.AssignmentChange{Item: &pb.AssignmentChange_Task{Task: a.withRegistryPassword(t)}}
}

// withRegistryPassword is t as its node's agent receives it: a copy whose
// registry credentials carry the password in clear, opened from the sealed
// one the store keeps (the store's object is not changed). Only this node's
// tasks come here, so only the nodes that pull the image get the password.
// A password that cannot be opened is left out: the agent then fails the
// pull saying so, and the manager's log says why.
func (a *assignSet) withRegistryPassword(t *pb.Task) *pb.Task {
	if t.GetSpec().GetContainer().GetRegistryAuth() == nil {
		return t
	}
	t = proto.Clone(t).(*pb.Task)
	ra := t.GetSpec().GetContainer().GetRegistryAuth()
	sealed := ra.GetSealedPassword()
	ra.Password, ra.SealedPassword = "", nil
	if len(sealed) == 0 {
		return t
	}
	pw, err := a.open(sealed)
	if err != nil {
		a.log.Error("open sealed registry password; the task goes to its agent without it", "task", t.GetId(), "registry", ra.GetServer(), "err", err)
		return t
	}
	ra.Password = string(pw)
	return t
}
