package controlapi

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

type eventStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs chan *pb.EventsMessage
}

func (s *eventStream) Context() context.Context       { return s.ctx }
func (s *eventStream) Send(m *pb.EventsMessage) error { s.msgs <- m; return nil }

func runEvents(s *Server, req *pb.EventsRequest) (*eventStream, chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	es := &eventStream{ctx: ctx, msgs: make(chan *pb.EventsMessage, 1000)}
	done := make(chan error, 1)
	go func() { done <- s.Events(req, es) }()
	return es, done, cancel
}

func describeEvent(ev *pb.Event) string {
	s := ev.GetType() + " " + ev.GetAction() + " " + ev.GetName()
	if e := ev.GetAttributes()["error"]; e != "" {
		s += " error=" + e
	}
	return s
}

// failTask writes a task's life: created, running, then failed.
func failTask(t *testing.T, st *store.MemoryStore, id, svc string, slot uint64) {
	t.Helper()
	tk := logTask(id, svc, "n1", slot, pb.TaskState_TASK_STATE_PENDING)
	set := func(change func(*pb.Task)) {
		err := st.Update(context.Background(), func(tx store.Tx) error {
			cur := proto.Clone(tx.GetTask(id)).(*pb.Task)
			change(cur)
			return tx.UpdateTask(cur)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Update(context.Background(), func(tx store.Tx) error { return tx.CreateTask(tk) }); err != nil {
		t.Fatal(err)
	}
	set(func(t *pb.Task) { t.Status.State = pb.TaskState_TASK_STATE_RUNNING })
	set(func(t *pb.Task) { t.Status.Message = "progress only" }) // no event
	set(func(t *pb.Task) { t.Status.State, t.Status.Err = pb.TaskState_TASK_STATE_FAILED, "exit code 3" })
}

func TestEventsHistoryFiltersAndLive(t *testing.T) {
	s, st := newServer(t)
	s.cfg.Now = time.Now
	start := time.Now().Add(-time.Second)
	created, err := s.CreateService(context.Background(), &pb.CreateServiceRequest{Spec: spec("web", 1)})
	if err != nil {
		t.Fatal(err)
	}
	svc := created.GetService().GetId()
	if _, err := s.CreateService(context.Background(), &pb.CreateServiceRequest{Spec: spec("other", 1)}); err != nil {
		t.Fatal(err)
	}
	failTask(t, st, "task1", svc, 1)

	// From the history: the service, its task running and failing.
	es, done, cancel := runEvents(s, &pb.EventsRequest{SinceUnixNano: start.UnixNano(), UntilUnixNano: time.Now().Add(time.Second).UnixNano(), Names: []string{"web"}})
	defer cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(es.msgs) > 0 {
		got = append(got, describeEvent((<-es.msgs).GetEvent()))
	}
	want := []string{"service create web", "task create web.1", "task running web.1", "task failed web.1 error=exit code 3"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Followed from now, only failures: the replacement's failure comes
	// as it happens (or from the history, should the watch start later).
	es, done, cancel2 := runEvents(s, &pb.EventsRequest{SinceUnixNano: time.Now().UnixNano(), Types: []string{"task"}, Actions: []string{"failed"}})
	defer cancel2()
	failTask(t, st, "task2", svc, 1)
	select {
	case m := <-es.msgs:
		if got := describeEvent(m.GetEvent()); got != "task failed web.1 error=exit code 3" || m.GetEvent().GetId() != "task2" {
			t.Fatalf("live event %s (%s)", got, m.GetEvent().GetId())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no live event")
	}
	cancel2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Node up and down.
	err = st.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateNode(&pb.Node{Id: "n1", Description: &pb.NodeDescription{Hostname: "h1"}, Spec: &pb.NodeSpec{Annotations: &pb.Annotations{}},
			Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}})
	})
	if err != nil {
		t.Fatal(err)
	}
	err = st.Update(context.Background(), func(tx store.Tx) error {
		n := proto.Clone(tx.GetNode("n1")).(*pb.Node)
		n.Status = &pb.NodeStatus{State: pb.NodeStatus_STATE_DOWN, Message: "heartbeat failure"}
		return tx.UpdateNode(n)
	})
	if err != nil {
		t.Fatal(err)
	}
	es, done, cancel3 := runEvents(s, &pb.EventsRequest{SinceUnixNano: start.UnixNano(), UntilUnixNano: time.Now().Add(time.Second).UnixNano(), Types: []string{"node"}})
	defer cancel3()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got = nil
	for len(es.msgs) > 0 {
		m := <-es.msgs
		got = append(got, describeEvent(m.GetEvent())+fmt.Sprint(" ", m.GetEvent().GetAttributes()["message"]))
	}
	if strings.Join(got, ";") != "node create h1 ;node down h1 heartbeat failure" {
		t.Fatalf("node events: %q", got)
	}

	_, done, cancel4 := runEvents(s, &pb.EventsRequest{Types: []string{"container"}})
	defer cancel4()
	if err := <-done; code(err) != codes.InvalidArgument {
		t.Fatalf("unknown type: %v", err)
	}
}
