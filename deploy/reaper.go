package deploy

import (
	"cmp"
	"slices"

	pb "berth/proto/berth/v1"
)

// reap picks the tasks of a unit to delete. A task is done once its desired
// state is past running (or it is being stopped now) and it is no longer on
// a node: finished, never assigned, or its node was removed. A task still
// running on a node that is down is not done; it goes once the node comes
// back and stops it, or once the node is removed.
//
// Done tasks that never reached a node are deleted at once: they have no
// history worth showing, and deleting them keeps a late scheduler from
// placing them. Of the others the newest in.history stay (Docker shows
// them in `service ps`), and so do the newest max_attempts of those that
// ended on their own, which the restart policy counts. Every done task of
// a unit that is gone (removed service, slot above replicas, removed node)
// goes.
func reap(in unitState, stopping []*pb.Task) []*pb.Task {
	var done []*pb.Task
	var out []*pb.Task
	for _, t := range in.tasks {
		if t.GetDesiredState() <= running && !slices.Contains(stopping, t) {
			continue
		}
		switch {
		case neverAssigned(t):
			out = append(out, t)
		case off(t, in.node):
			done = append(done, t)
		}
	}
	if in.gone {
		return append(out, done...)
	}
	slices.SortFunc(done, newestFirst)
	protect := int(min(in.svc.GetSpec().GetTask().GetRestart().GetMaxAttempts(), uint64(len(done))))
	kept, attempts := 0, 0
	for _, t := range done {
		switch {
		case kept < in.history:
			kept++
			if endedOnItsOwn(t) {
				attempts++
			}
		case endedOnItsOwn(t) && attempts < protect:
			attempts++
		default:
			out = append(out, t)
		}
	}
	return out
}

// neverAssigned reports whether a task never reached a node.
func neverAssigned(t *pb.Task) bool { return t.GetStatus().GetState() < assigned }

// off reports whether a task holds nothing on any node: it finished, or
// its node is gone from the cluster.
func off(t *pb.Task, node func(string) *pb.Node) bool {
	return finished(t) || t.GetNodeId() != "" && node(t.GetNodeId()) == nil
}

func newestFirst(a, b *pb.Task) int {
	return cmp.Or(
		b.GetMeta().GetCreatedAt().AsTime().Compare(a.GetMeta().GetCreatedAt().AsTime()),
		cmp.Compare(b.GetId(), a.GetId()),
	)
}
