package dispatcher

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// UpdateTaskStatus applies the observed states an agent reports for its
// node's tasks. Reports from all agents within one BatchWindow go out as
// one store write. Updates for unknown tasks, for tasks of other nodes,
// or that would move a task's state backwards are ignored.
func (d *Dispatcher) UpdateTaskStatus(ctx context.Context, req *pb.UpdateTaskStatusRequest) (*pb.UpdateTaskStatusResponse, error) {
	id, t, err := d.caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := d.checkSession(t, id.NodeID, req.GetSessionId()); err != nil {
		return nil, err
	}
	for i, u := range req.GetUpdates() {
		if u.GetTaskId() == "" {
			return nil, status.Errorf(codes.InvalidArgument, "updates[%d].task_id is empty: name the task the status is for", i)
		}
		if u.GetStatus() == nil {
			return nil, status.Errorf(codes.InvalidArgument, "updates[%d].status is missing for task %s: send the task's observed status", i, u.GetTaskId())
		}
	}
	if len(req.GetUpdates()) == 0 {
		return &pb.UpdateTaskStatusResponse{}, nil
	}
	if err := d.submit(ctx, t, d.taskStatuses(id.NodeID, req.GetUpdates())); err != nil {
		return nil, err
	}
	return &pb.UpdateTaskStatusResponse{}, nil
}

// taskStatuses applies one request's updates, skipping those it must ignore.
func (d *Dispatcher) taskStatuses(node string, updates []*pb.TaskStatusUpdate) func(store.Tx) error {
	return func(tx store.Tx) error {
		for _, u := range updates {
			cur := tx.GetTask(u.GetTaskId())
			switch {
			case cur == nil:
				d.log.Debug("status for an unknown task ignored", "node", node, "task", u.GetTaskId())
				continue
			case cur.GetNodeId() != node:
				d.log.Warn("status for a task of another node ignored", "node", node, "task", u.GetTaskId(), "task_node", cur.GetNodeId())
				continue
			case u.GetStatus().GetState() < cur.GetStatus().GetState():
				d.log.Debug("status that moves a task backwards ignored", "node", node, "task", u.GetTaskId(),
					"state", cur.GetStatus().GetState(), "reported", u.GetStatus().GetState())
				continue
			case proto.Equal(u.GetStatus(), cur.GetStatus()):
				continue
			}
			t := proto.Clone(cur).(*pb.Task)
			t.Status = proto.Clone(u.GetStatus()).(*pb.TaskStatus)
			if err := tx.UpdateTask(t); err != nil {
				return fmt.Errorf("task %s: %w", t.GetId(), err)
			}
		}
		return nil
	}
}
