package controlapi

import (
	"context"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

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

// ListTasks lists tasks by service, node, desired state, ID and name, a
// page at a time. It reads through the store's service or node index when
// the request names services or nodes, so listing one service's tasks
// costs that service's tasks, not the cluster's.
func (s *Server) ListTasks(ctx context.Context, req *pb.ListTasksRequest) (*pb.ListTasksResponse, error) {
	if err := firstErr(validate.Filters(req.GetFilters()), validate.PageToken(req.GetPageToken()),
		validate.TaskFilters(req.GetServiceIds(), req.GetNodeIds(), len(req.GetDesiredStates()))); err != nil {
		return nil, toStatus(err)
	}
	resp := &pb.ListTasksResponse{}
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
		names := taskNamer(tx)
		var out []*pb.Task
		seen := map[store.By]bool{}
		for _, by := range sel {
			if seen[by] {
				continue
			}
			seen[by] = true
			ts, err := tx.FindTasks(by)
			if err != nil {
				return err
			}
			for _, t := range ts {
				if taskMatches(req, t, names) {
					out = append(out, t)
				}
			}
		}
		resp.Tasks, resp.NextPageToken = page(out, (*pb.Task).GetId, req.GetPageToken(), pageBudget, publicTask)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func taskMatches(req *pb.ListTasksRequest, t *pb.Task, names func(*pb.Task) string) bool {
	in := func(list []string, v string) bool {
		return len(list) == 0 || slices.Contains(list, v)
	}
	if isAttachment(t) || !in(req.GetServiceIds(), t.GetServiceId()) || !in(req.GetNodeIds(), t.GetNodeId()) {
		return false
	}
	if ds := req.GetDesiredStates(); len(ds) > 0 && !slices.Contains(ds, t.GetDesiredState()) {
		return false
	}
	f := req.GetFilters()
	if f == nil {
		return true
	}
	if len(f.GetNames()) > 0 || len(f.GetNamePrefixes()) > 0 {
		name := names(t)
		full := name + "." + t.GetId()
		if len(f.GetNames()) > 0 && !anyOf(f.GetNames(), func(n string) bool { return strings.EqualFold(n, name) }) {
			return false
		}
		if len(f.GetNamePrefixes()) > 0 && !anyOf(f.GetNamePrefixes(), func(p string) bool { return strings.HasPrefix(full, p) }) {
			return false
		}
	}
	onlyIDsAndLabels := &pb.ListFilters{IdPrefixes: f.GetIdPrefixes(), Labels: f.GetLabels()}
	return matches(onlyIDsAndLabels, t.GetId(), t.GetAnnotations())
}

// taskNamer names tasks as Docker does: SERVICE.SLOT, or SERVICE.NODEID
// for a global task; it looks each service up once.
func taskNamer(tx store.ReadTx) func(*pb.Task) string {
	services := map[string]string{}
	return func(t *pb.Task) string {
		name, ok := services[t.GetServiceId()]
		if !ok {
			name = tx.GetService(t.GetServiceId()).GetSpec().GetAnnotations().GetName()
			services[t.GetServiceId()] = name
		}
		if t.GetSlot() == 0 {
			return name + "." + t.GetNodeId()
		}
		return name + "." + strconv.FormatUint(t.GetSlot(), 10)
	}
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
		return !isAttachment(t) && (len(req.GetServiceIds()) == 0 || anyOf(req.GetServiceIds(), func(id string) bool { return id == t.GetServiceId() }))
	}
	var first []*pb.Task
	w, err := s.st.ViewAndWatch(ctx, func(tx store.ReadTx) {
		// Through the service index: a watch of one service reads its
		// tasks, not the cluster's.
		sel := []store.By{store.All}
		if ids := req.GetServiceIds(); len(ids) > 0 {
			sel = sel[:0]
			for _, id := range slices.Compact(slices.Sorted(slices.Values(ids))) {
				sel = append(sel, store.ByServiceID(id))
			}
		}
		for _, by := range sel {
			ts, _ := tx.FindTasks(by)
			for _, t := range ts {
				if !isAttachment(t) {
					first = append(first, publicTask(t))
				}
			}
		}
	}, store.Only[*pb.Task]())
	if err != nil {
		return toStatus(err)
	}
	defer w.Close()
	if err := sendInPages(first, stream); err != nil {
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

// sendInPages sends a watch's first tasks in messages of at most about
// pageBudget bytes, so a service with many or large tasks never makes a
// message over gRPC's limit. It always sends at least one message, which
// tells the client the first view is being sent.
func sendInPages(tasks []*pb.Task, stream pb.Control_WatchTasksServer) error {
	for {
		var msg pb.WatchTasksResponse
		size := 0
		for len(tasks) > 0 && (size < pageBudget || len(msg.Tasks) == 0) {
			size += proto.Size(tasks[0])
			msg.Tasks, tasks = append(msg.Tasks, tasks[0]), tasks[1:]
		}
		if err := stream.Send(&msg); err != nil {
			return err
		}
		if len(tasks) == 0 {
			return nil
		}
	}
}
