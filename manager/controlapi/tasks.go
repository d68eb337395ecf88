package controlapi

import (
	"context"

	"berth/manager/validate"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// GetTask finds a task by ID or ID prefix.
func (s *Server) GetTask(ctx context.Context, req *pb.GetTaskRequest) (*pb.GetTaskResponse, error) {
	var t *pb.Task
	err := s.view(ctx, func(tx store.ReadTx) (err error) {
		t, err = resolve("task", req.GetTaskId(), tx.GetTask, tx.FindTasks)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.GetTaskResponse{Task: publicTask(t)}, nil
}

// ListTasks lists tasks by service, node and desired state.
func (s *Server) ListTasks(ctx context.Context, req *pb.ListTasksRequest) (*pb.ListTasksResponse, error) {
	if err := validate.Filters(req.GetFilters()); err != nil {
		return nil, toStatus(err)
	}
	if err := validate.TaskFilters(req.GetServiceIds(), req.GetNodeIds(), len(req.GetDesiredStates())); err != nil {
		return nil, toStatus(err)
	}
	var out []*pb.Task
	err := s.view(ctx, func(tx store.ReadTx) error {
		var sel []store.By
		for _, id := range req.GetServiceIds() {
			sel = append(sel, store.ByServiceID(id))
		}
		if len(sel) == 0 {
			for _, id := range req.GetNodeIds() {
				sel = append(sel, store.ByNodeID(id))
			}
		}
		if len(sel) == 0 {
			sel = []store.By{store.All}
		}
		for _, by := range sel {
			ts, err := tx.FindTasks(by)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if taskMatches(req, t) {
					out = append(out, publicTask(t))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &pb.ListTasksResponse{Tasks: out}, nil
}

func taskMatches(req *pb.ListTasksRequest, t *pb.Task) bool {
	in := func(list []string, v string) bool {
		return len(list) == 0 || anyOf(list, func(s string) bool { return s == v })
	}
	if !in(req.GetServiceIds(), t.GetServiceId()) || !in(req.GetNodeIds(), t.GetNodeId()) {
		return false
	}
	if ds := req.GetDesiredStates(); len(ds) > 0 {
		found := false
		for _, d := range ds {
			found = found || d == t.GetDesiredState()
		}
		if !found {
			return false
		}
	}
	return req.GetFilters() == nil || matches(req.GetFilters(), t.GetId(), t.GetAnnotations())
}

// WatchTasks sends the tasks of the given services (all when none), then
// every change to them, until the client goes away.
func (s *Server) WatchTasks(req *pb.WatchTasksRequest, stream pb.Control_WatchTasksServer) error {
	ctx := stream.Context()
	if err := validate.TaskFilters(req.GetServiceIds(), nil, 0); err != nil {
		return toStatus(err)
	}
	if s.cfg.Reads != nil {
		if err := s.cfg.Reads(ctx); err != nil {
			return toStatus(err)
		}
	}
	want := func(t *pb.Task) bool {
		return len(req.GetServiceIds()) == 0 || anyOf(req.GetServiceIds(), func(id string) bool { return id == t.GetServiceId() })
	}
	var first []*pb.Task
	w, err := s.st.ViewAndWatch(ctx, func(tx store.ReadTx) {
		all, _ := tx.FindTasks(store.All)
		for _, t := range all {
			if want(t) {
				first = append(first, publicTask(t))
			}
		}
	}, store.Only[*pb.Task]())
	if err != nil {
		return toStatus(err)
	}
	defer w.Close()
	if err := stream.Send(&pb.WatchTasksResponse{Tasks: first}); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events():
			if !ok {
				return toStatus(w.Err())
			}
			t := ev.Object.(*pb.Task)
			if !want(t) {
				continue
			}
			msg := &pb.WatchTasksResponse{Tasks: []*pb.Task{publicTask(t)}}
			if ev.Kind == store.EventDelete {
				msg = &pb.WatchTasksResponse{Removed: []string{t.GetId()}}
			}
			if err := stream.Send(msg); err != nil {
				return err
			}
		}
	}
}
