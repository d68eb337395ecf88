package controlapi

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// isAttachment reports whether t is a standalone container's network
// attachment (berth-agent run --network), not a service's task: task
// lists and watches leave those out, network inspect shows them.
func isAttachment(t *pb.Task) bool { return t.GetSpec().GetAttachment() != nil }

// attachmentsOn lists the live attachments on network id (those whose
// addresses are held: their container has not ended), by container name.
// Attachments are tasks of no service: the index reads those alone, not
// every task of the cluster on each inspect and rm.
func attachmentsOn(tx store.ReadTx, id string) ([]*pb.Task, error) {
	all, err := tx.FindTasks(store.ByServiceID(""))
	if err != nil {
		return nil, err
	}
	var out []*pb.Task
	for _, t := range all {
		if isAttachment(t) && t.GetStatus().GetState() <= pb.TaskState_TASK_STATE_RUNNING &&
			slices.ContainsFunc(t.GetSpec().GetAttachment().GetNetworks(), func(a *pb.NetworkAttachment) bool { return a.GetTarget() == id }) {
			out = append(out, t)
		}
	}
	slices.SortFunc(out, func(a, b *pb.Task) int {
		return cmp.Or(cmp.Compare(a.GetSpec().GetAttachment().GetContainerId(), b.GetSpec().GetAttachment().GetContainerId()),
			cmp.Compare(a.GetNodeId(), b.GetNodeId()))
	})
	return out, nil
}

// containerList names attachments as "NAME on HOSTNAME", comma-separated.
func containerList(tx store.ReadTx, atts []*pb.Task) string {
	names := make([]string, len(atts))
	for i, t := range atts {
		node := t.GetNodeId()
		if h := tx.GetNode(node).GetDescription().GetHostname(); h != "" {
			node = h
		}
		names[i] = fmt.Sprintf("%s on %s", t.GetSpec().GetAttachment().GetContainerId(), node)
	}
	return strings.Join(names, ", ")
}

// notServiceTask refuses, for exec and logs, an attachment task: no
// container of berth's runs behind it (the standalone container is its
// node's own).
func notServiceTask(t *pb.Task) error {
	if !isAttachment(t) {
		return nil
	}
	return status.Errorf(codes.FailedPrecondition, "task %s is the network attachment of standalone container %s on node %s, not a service's task: use the container on its node",
		t.GetId(), t.GetSpec().GetAttachment().GetContainerId(), t.GetNodeId())
}
