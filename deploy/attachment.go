package deploy

import pb "berth/proto/berth/v1"

// decideAttachments plans the tasks of no service on one node: standalone
// containers' network attachments (TaskSpec.attachment), which the
// dispatcher makes and ends for the node's agent. No service wants them,
// so nothing replaces them; the orchestrator only ends what its node can
// no longer hold, and clears away what ended:
//
//   - one whose node is down is stopped (desired shutdown), as a service's
//     task there is: its agent ends it when the node comes back (the
//     container can ask for a new one). A drained node keeps them: drain
//     moves service tasks, and standalone containers stay, as in Docker;
//   - one whose node was removed, or that never got its addresses and is
//     no longer wanted, or that ended (complete, failed, ...), is deleted:
//     an attachment keeps no history, and its addresses are freed with it;
//   - a task of no service that is no attachment is removed, as the tasks
//     of a removed service are.
func decideAttachments(u unit, tasks []*pb.Task, node func(string) *pb.Node) plan {
	p := plan{u: u}
	for _, t := range tasks {
		switch {
		case t.GetSpec().GetAttachment() == nil || finished(t) || off(t, node):
			p.remove = append(p.remove, t)
		case t.GetDesiredState() > running:
			if neverAssigned(t) {
				p.remove = append(p.remove, t)
			}
		case node(t.GetNodeId()).GetStatus().GetState() == pb.NodeStatus_STATE_DOWN:
			p.stop = append(p.stop, t)
		}
	}
	return p
}
