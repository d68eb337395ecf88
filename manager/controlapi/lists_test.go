package controlapi

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// TestPageCutsByBytes: pages follow ID order, stay within the budget plus
// one object, and together hold every object once, whatever the input
// order.
func TestPageCutsByBytes(t *testing.T) {
	var items []*pb.Task
	for i := 99; i >= 0; i-- { // reversed: page sorts
		items = append(items, &pb.Task{Id: fmt.Sprintf("t%03d", i), ServiceId: "s"})
	}
	one := proto.Size(items[0])
	budget := 10 * one
	var got []string
	token, pages := "", 0
	for {
		out, next := page(items, (*pb.Task).GetId, token, budget, same[*pb.Task])
		pages++
		size := 0
		for _, o := range out {
			size += proto.Size(o)
			got = append(got, o.GetId())
		}
		if size > budget+one {
			t.Fatalf("page %d holds %d bytes, over the budget %d plus one object", pages, size, budget)
		}
		if next == "" {
			break
		}
		if next != out[len(out)-1].GetId() {
			t.Fatalf("token %q, want the page's last ID %q", next, out[len(out)-1].GetId())
		}
		token = next
	}
	for i := 1; i < len(got); i++ {
		if got[i-1] >= got[i] {
			t.Fatalf("pages list %s then %s: want each ID once, in order", got[i-1], got[i])
		}
	}
	if len(got) != 100 {
		t.Fatalf("pages hold %d objects, want 100", len(got))
	}
	if pages != 10 {
		t.Errorf("%d pages for 100 objects of a tenth of the budget, want 10", pages)
	}
	// A token past the end, or between IDs, continues after it.
	if out, next := page(items, (*pb.Task).GetId, "t0505", 1<<20, same[*pb.Task]); len(out) != 49 || out[0].GetId() != "t051" || next != "" {
		t.Errorf("after t0505: %d objects from %s, next %q", len(out), out[0].GetId(), next)
	}
	if out, next := page(items, (*pb.Task).GetId, "z", 1<<20, same[*pb.Task]); len(out) != 0 || next != "" {
		t.Errorf("after the last ID: %v, %q", out, next)
	}
}

// TestListsFilterOnTheManager: counts come with the services; modes, roles,
// task names, nodes and desired states are filtered by the server; unknown
// enum values are InvalidArgument.
func TestListsFilterOnTheManager(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	web, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec("web", 3)})
	if err != nil {
		t.Fatal(err)
	}
	g := spec("agent", 0)
	g.Replicas, g.Mode = nil, pb.ServiceMode_SERVICE_MODE_GLOBAL
	agent, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: g})
	if err != nil {
		t.Fatal(err)
	}
	webID, agentID := web.GetService().GetId(), agent.GetService().GetId()
	running, pending, shutdown := pb.TaskState_TASK_STATE_RUNNING, pb.TaskState_TASK_STATE_PENDING, pb.TaskState_TASK_STATE_SHUTDOWN
	tasks := []*pb.Task{
		{Id: "w1", ServiceId: webID, Slot: 1, NodeId: "n1", DesiredState: running, Status: &pb.TaskStatus{State: running}},
		{Id: "w2", ServiceId: webID, Slot: 2, NodeId: "n2", DesiredState: running, Status: &pb.TaskStatus{State: pending}},
		{Id: "w1old", ServiceId: webID, Slot: 1, NodeId: "n1", DesiredState: shutdown, Status: &pb.TaskStatus{State: running}},
		{Id: "a1", ServiceId: agentID, NodeId: "n1", DesiredState: running, Status: &pb.TaskStatus{State: running}},
		{Id: "a2", ServiceId: agentID, NodeId: "n2", DesiredState: running, Status: &pb.TaskStatus{State: running}},
		{Id: "a2old", ServiceId: agentID, NodeId: "n2", DesiredState: shutdown, Status: &pb.TaskStatus{State: shutdown}},
	}
	err = st.Update(ctx, func(tx store.Tx) error {
		for _, n := range []*pb.Node{
			{Id: "n1", Role: pb.NodeSpec_ROLE_MANAGER, Description: &pb.NodeDescription{Hostname: "alpha"}},
			{Id: "n2", Role: pb.NodeSpec_ROLE_WORKER, Description: &pb.NodeDescription{Hostname: "beta"}},
		} {
			if err := tx.CreateNode(n); err != nil {
				return err
			}
		}
		for _, task := range tasks {
			if err := tx.CreateTask(task); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	svcs, err := s.ListServices(ctx, &pb.ListServicesRequest{Status: true})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]string{}
	for _, svc := range svcs.GetServices() {
		counts[svc.GetSpec().GetAnnotations().GetName()] = fmt.Sprintf("%d/%d", svc.GetStatus().GetRunningTasks(), svc.GetStatus().GetDesiredTasks())
	}
	if counts["web"] != "1/3" || counts["agent"] != "2/2" {
		t.Errorf("counts %v, want web 1/3 (replicas) and agent 2/2 (tasks desired running)", counts)
	}
	if plain, _ := s.ListServices(ctx, &pb.ListServicesRequest{}); plain.GetServices()[0].GetStatus() != nil {
		t.Errorf("status filled in without being asked")
	}
	if global, _ := s.ListServices(ctx, &pb.ListServicesRequest{Modes: []pb.ServiceMode{pb.ServiceMode_SERVICE_MODE_GLOBAL}}); len(global.GetServices()) != 1 || global.GetServices()[0].GetId() != agentID {
		t.Errorf("mode global: %v", global.GetServices())
	}

	for _, tc := range []struct {
		name string
		req  *pb.ListTasksRequest
		want []string
	}{
		{"all", &pb.ListTasksRequest{}, []string{"a1", "a2", "a2old", "w1", "w1old", "w2"}},
		{"service", &pb.ListTasksRequest{ServiceIds: []string{webID}}, []string{"w1", "w1old", "w2"}},
		{"node", &pb.ListTasksRequest{NodeIds: []string{"n2"}}, []string{"a2", "a2old", "w2"}},
		{"service on node", &pb.ListTasksRequest{ServiceIds: []string{agentID}, NodeIds: []string{"n2"}}, []string{"a2", "a2old"}},
		{"desired running", &pb.ListTasksRequest{DesiredStates: []pb.TaskState{running}, ServiceIds: []string{webID}}, []string{"w1", "w2"}},
		{"slot name", &pb.ListTasksRequest{Filters: &pb.ListFilters{Names: []string{"WEB.1"}}}, []string{"w1", "w1old"}},
		{"name prefix", &pb.ListTasksRequest{Filters: &pb.ListFilters{NamePrefixes: []string{"web.1.w1o"}}}, []string{"w1old"}},
		{"global name", &pb.ListTasksRequest{Filters: &pb.ListFilters{NamePrefixes: []string{"agent.n2"}}}, []string{"a2", "a2old"}},
		{"id prefix", &pb.ListTasksRequest{Filters: &pb.ListFilters{IdPrefixes: []string{"a2"}}}, []string{"a2", "a2old"}},
	} {
		resp, err := s.ListTasks(ctx, tc.req)
		var got []string
		for _, task := range resp.GetTasks() {
			got = append(got, task.GetId())
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}

	managers, err := s.ListNodes(ctx, &pb.ListNodesRequest{Roles: []pb.NodeSpec_Role{pb.NodeSpec_ROLE_MANAGER}})
	if err != nil || len(managers.GetNodes()) != 1 || managers.GetNodes()[0].GetId() != "n1" {
		t.Errorf("role manager: %v, %v", managers.GetNodes(), err)
	}
	if beta, err := s.ListNodes(ctx, &pb.ListNodesRequest{Filters: &pb.ListFilters{NamePrefixes: []string{"be"}}}); err != nil || len(beta.GetNodes()) != 1 {
		t.Errorf("node name prefix be: %v, %v", beta.GetNodes(), err)
	}

	for name, call := range map[string]func() error{
		"mode": func() error {
			_, err := s.ListServices(ctx, &pb.ListServicesRequest{Modes: []pb.ServiceMode{7}})
			return err
		},
		"role": func() error {
			_, err := s.ListNodes(ctx, &pb.ListNodesRequest{Roles: []pb.NodeSpec_Role{9}})
			return err
		},
		"token": func() error {
			_, err := s.ListTasks(ctx, &pb.ListTasksRequest{PageToken: string(make([]byte, 2000))})
			return err
		},
	} {
		if err := call(); code(err) != codes.InvalidArgument {
			t.Errorf("bad %s: %v, want InvalidArgument", name, err)
		}
	}
}

// TestWatchTasksFirstViewInPages: a watch's first view of a service whose
// tasks together exceed a reply's budget comes in several messages, none
// over the budget plus one task, with that service's tasks only.
func TestWatchTasksFirstViewInPages(t *testing.T) {
	s, st := newServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	big := &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "x", Env: []string{"PAD=" + strings.Repeat("x", 600<<10)}}}
	err := st.Update(ctx, func(tx store.Tx) error {
		for i := range 5 {
			if err := tx.CreateTask(&pb.Task{Id: fmt.Sprintf("a%d", i), ServiceId: "a", Slot: uint64(i + 1), Spec: big}); err != nil {
				return err
			}
		}
		return tx.CreateTask(&pb.Task{Id: "b1", ServiceId: "b", Slot: 1})
	})
	if err != nil {
		t.Fatal(err)
	}
	stream := &watchStream{ctx: ctx, sent: make(chan *pb.WatchTasksResponse, 16)}
	done := make(chan error, 1)
	go func() { done <- s.WatchTasks(&pb.WatchTasksRequest{ServiceIds: []string{"a"}}, stream) }()
	defer func() { cancel(); <-done }()
	var got []string
	msgs := 0
	for len(got) < 5 {
		select {
		case m := <-stream.sent:
			msgs++
			if size := proto.Size(m); size > pageBudget+700<<10 {
				t.Errorf("message %d is %d bytes", msgs, size)
			}
			for _, task := range m.GetTasks() {
				got = append(got, task.GetId())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("first view incomplete after 10s: %v", got)
		}
	}
	if slices.Sort(got); !slices.Equal(got, []string{"a0", "a1", "a2", "a3", "a4"}) || msgs < 2 {
		t.Errorf("first view: %v in %d messages, want a0..a4 in several", got, msgs)
	}
}
