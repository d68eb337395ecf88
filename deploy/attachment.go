package deploy

import pb "berth/proto/berth/v1"

// decideAttachments plans the tasks of no service on one node: standalone
// containers' network attachments (TaskSpec.attachment), which the
// dispatcher makes and ends for the node's agent. No service wants them,
// so nothing replaces them; the orchestrator only ends what its node can
// no longer hold, and clears away what ended:
//
//   - one whose node is down is kept, as swarmkit keeps them: unlike a
//     service's task, nothing can replace it elsewhere, and a container
//     that outlives its agent's restart (or a short partition) keeps its
//     address and names. The dispatcher takes it out of DNS while its node
//     is down (endpoints.addAttachment). A drained node keeps them too:
//     drain moves service tasks, and standalone containers stay, as in
//     Docker;
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
		}
	}
	return p
}
