package allocator

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "berth/proto/berth/v1"
)

// AttachedMessage is the status message of an attachment task once it has
// its addresses.
const AttachedMessage = "network attachment allocated"

// planAttachment gives an attachment task (a standalone container on
// attachable networks, TaskSpec.attachment) an address on each network of
// its spec, with the spec's aliases, and moves it to ASSIGNED: its node is
// the one that asked for it, so the assign loop has nothing to place, and
// the dispatcher sends it to that node at once. It has no VIP and no
// endpoint. On failure it stays pending with the reason, as a service's
// task does; the dispatcher that waits for it reads the reason.
func (s *state) planAttachment(p *plan, t *pb.Task, now time.Time) {
	spec := t.GetSpec().GetAttachment().GetNetworks()
	nets := make([]string, len(spec))
	for i, n := range spec {
		nets[i] = n.GetTarget()
	}
	atts, err := s.addresses(t.GetId(), nets, spec)
	if err == nil && len(atts) == 0 {
		err = fmt.Errorf("the attachment names no network")
	}
	t = proto.Clone(t).(*pb.Task)
	if err != nil {
		s.fail(p, t, err, now)
		return
	}
	t.Networks = atts
	t.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_ASSIGNED, Timestamp: timestamppb.New(now), Message: AttachedMessage}
	p.tasks = append(p.tasks, t)
}
