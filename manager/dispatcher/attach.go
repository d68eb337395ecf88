package dispatcher

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/ids"
	"berth/manager/validate"
	"berth/overlay/allocator"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// attachWaitMessage is an attachment task's status until the allocator
// gave it its addresses.
const attachWaitMessage = "waiting for network addresses"

// AttachNetwork gives a standalone container of the calling node addresses
// on attachable networks: it stores an attachment task (no service, the
// caller's node, spec.attachment with the networks as IDs) and answers once
// the allocator gave it its addresses. The same container asking again
// while its attachment lives gets that attachment back, so an agent may
// retry after a lost answer. An attachment the allocator cannot serve is
// removed again and refused with ResourceExhausted.
func (d *Dispatcher) AttachNetwork(ctx context.Context, req *pb.AttachNetworkRequest) (*pb.AttachNetworkResponse, error) {
	id, t, err := d.caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := validate.AttachNetwork(req); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var task *pb.Task
	d.attachMu.Lock()
	err = d.cfg.Store.Update(ctx, func(tx store.Tx) error {
		var err error
		task, err = attachment(tx, id.NodeID, req, d.cfg.Now)
		return err
	})
	d.attachMu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	got, err := d.awaitAddresses(ctx, t, task.GetId())
	if err != nil {
		if ctx.Err() != nil {
			// The agent stopped waiting: an attachment nobody was told of
			// would hold addresses for no container. A retry makes a new one.
			d.enqueue(t, &write{fn: removeUnallocated(task.GetId())})
		}
		return nil, err
	}
	d.log.Info("container attached to networks", "node", id.NodeID, "container", req.GetContainerId(), "task", got.GetId())
	return &pb.AttachNetworkResponse{Task: got}, nil
}

// attachment returns the container's live attachment on node, or stores a
// new one. Within tx, so a retry racing the first call finds its task.
func attachment(tx store.Tx, node string, req *pb.AttachNetworkRequest, now func() time.Time) (*pb.Task, error) {
	if nodeDown(tx.GetNode(node)) {
		// The orchestrator would stop it at once, as a down node's tasks.
		return nil, status.Errorf(codes.Unavailable, "node %s is down until its agent opens a session again; retry then", node)
	}
	var nets []*pb.NetworkAttachment
	for i, a := range req.GetNetworks() {
		n, err := attachableNetwork(tx, a.GetTarget())
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(nets, func(x *pb.NetworkAttachment) bool { return x.GetTarget() == n.GetId() }) {
			return nil, status.Errorf(codes.InvalidArgument, "invalid networks[%d]: network %s is listed twice; list each network once", i, a.GetTarget())
		}
		nets = append(nets, &pb.NetworkAttachment{Target: n.GetId(), Aliases: slices.Clone(a.GetAliases())})
	}
	cid := req.GetContainerId()
	if cur := liveAttachment(tx, node, cid); cur != nil {
		if !slices.EqualFunc(cur.GetSpec().GetAttachment().GetNetworks(), nets, func(a, b *pb.NetworkAttachment) bool { return proto.Equal(a, b) }) {
			return nil, status.Errorf(codes.FailedPrecondition, "container %s already has attachment %s on other networks or aliases: detach it first", cid, cur.GetId())
		}
		return cur, nil
	}
	task := &pb.Task{
		Id: ids.New(), NodeId: node, DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Annotations: &pb.Annotations{Name: cid},
		Spec:        &pb.TaskSpec{Attachment: &pb.NetworkAttachmentSpec{ContainerId: cid, Networks: nets}},
		Status:      &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING, Timestamp: timestamppb.New(now()), Message: attachWaitMessage},
	}
	if err := tx.CreateTask(task); err != nil {
		return nil, fmt.Errorf("create attachment task: %w", err)
	}
	return task, nil
}

// attachableNetwork finds a network by ID, name or unique ID prefix and
// checks that standalone containers may join it.
func attachableNetwork(tx store.ReadTx, ref string) (*pb.Network, error) {
	n := tx.GetNetwork(ref)
	if n == nil {
		if byName, _ := tx.FindNetworks(store.ByName(ref)); len(byName) == 1 {
			n = byName[0]
		} else if byID, _ := tx.FindNetworks(store.ByIDPrefix(ref)); len(byID) == 1 {
			n = byID[0]
		}
	}
	if n == nil {
		return nil, status.Errorf(codes.NotFound, "network %s not found: create it with berth network create --attachable %s", ref, ref)
	}
	if !n.GetSpec().GetAttachable() {
		name := n.GetSpec().GetAnnotations().GetName()
		return nil, status.Errorf(codes.FailedPrecondition, "network %s was created without --attachable; standalone containers join only attachable networks: berth network create --attachable NAME", name)
	}
	return n, nil
}

// liveAttachment is container cid's attachment on node that managers still
// want and whose container has not ended, or nil.
func liveAttachment(tx store.ReadTx, node, cid string) *pb.Task {
	ts, _ := tx.FindTasks(store.ByNodeID(node))
	for _, t := range ts {
		if t.GetSpec().GetAttachment().GetContainerId() == cid && t.GetServiceId() == "" &&
			t.GetDesiredState() <= pb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() <= pb.TaskState_TASK_STATE_RUNNING {
			return t
		}
	}
	return nil
}

// awaitAddresses follows attachment task id until the allocator gave it
// its addresses, or said why it cannot; then it removes the task and
// refuses with ResourceExhausted.
func (d *Dispatcher) awaitAddresses(ctx context.Context, t *term, id string) (*pb.Task, error) {
	var cur *pb.Task
	w, err := d.cfg.Store.ViewAndWatch(ctx, func(tx store.ReadTx) { cur = tx.GetTask(id) }, store.Only[*pb.Task]())
	if err != nil {
		return nil, toStatus(err)
	}
	defer w.Close()
	for {
		switch {
		case cur == nil:
			return nil, status.Errorf(codes.Aborted, "attachment %s was removed before it got its addresses; retry", id)
		case len(cur.GetNetworks()) > 0:
			return cur, nil
		case strings.HasPrefix(cur.GetStatus().GetErr(), allocator.NoAddresses):
			msg := cur.GetStatus().GetErr()
			if err := d.submit(ctx, t, removeTask(id)); err != nil {
				return nil, err
			}
			return nil, status.Error(codes.ResourceExhausted, msg)
		}
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return nil, toStatus(fmt.Errorf("watch attachment %s: %w", id, w.Err()))
			}
			if o, _ := ev.Object.(*pb.Task); o.GetId() == id {
				cur = o
				if ev.Kind == store.EventDelete {
					cur = nil
				}
			}
		case <-t.quit:
			return nil, errStopped
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

// removeTask deletes task id if it is still there.
func removeTask(id string) func(store.Tx) error {
	return func(tx store.Tx) error {
		if tx.GetTask(id) == nil {
			return nil
		}
		return tx.DeleteTask(id)
	}
}

// removeUnallocated deletes attachment id while it has no addresses yet.
// One that got them was answered, or will be to a retry.
func removeUnallocated(id string) func(store.Tx) error {
	return func(tx store.Tx) error {
		if cur := tx.GetTask(id); cur == nil || len(cur.GetNetworks()) > 0 {
			return nil
		}
		return tx.DeleteTask(id)
	}
}

// DetachNetwork ends an attachment of the calling node: the task goes, so
// its addresses are freed and its names leave DNS. An attachment that is
// gone already is no error; another node's is refused.
func (d *Dispatcher) DetachNetwork(ctx context.Context, req *pb.DetachNetworkRequest) (*pb.DetachNetworkResponse, error) {
	id, _, err := d.caller(ctx)
	if err != nil {
		return nil, err
	}
	aid := req.GetAttachmentId()
	if aid == "" {
		return nil, status.Error(codes.InvalidArgument, "invalid attachment_id: empty; give the ID AttachNetwork answered with")
	}
	// Not through the batch window: a container's end waits on it.
	err = d.cfg.Store.Update(ctx, func(tx store.Tx) error {
		cur := tx.GetTask(aid)
		switch {
		case cur == nil:
			return nil
		case cur.GetNodeId() != id.NodeID:
			return status.Errorf(codes.PermissionDenied, "attachment %s belongs to another node; only its own node may end it", aid)
		case cur.GetSpec().GetAttachment() == nil:
			return status.Errorf(codes.InvalidArgument, "invalid attachment_id: task %s is a service's task, not a network attachment", aid)
		}
		return tx.DeleteTask(aid)
	})
	if err != nil {
		return nil, toStatus(err)
	}
	d.log.Info("container detached from networks", "node", id.NodeID, "task", aid)
	return &pb.DetachNetworkResponse{}, nil
}
