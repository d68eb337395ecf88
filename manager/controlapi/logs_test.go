package controlapi

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// fakeAgents answers TaskLogs from canned lines per task; nodes in down
// have no session. Followed logs of tasks in open stay open until ctx ends.
type fakeAgents struct {
	mu    sync.Mutex
	lines map[string][]string
	down  map[string]bool
	open  map[string]bool
	asked []*pb.TaskLogsRequest
	execs []*pb.ExecStart
}

func (f *fakeAgents) TaskLogs(ctx context.Context, node string, req *pb.TaskLogsRequest, out chan<- *pb.LogMessage) error {
	f.mu.Lock()
	f.asked = append(f.asked, req)
	lines, down, open := f.lines[req.GetTaskId()], f.down[node], f.open[req.GetTaskId()]
	f.mu.Unlock()
	if down {
		return status.Errorf(codes.Unavailable, "node %s has no session with the managers (it is down or unreachable)", node)
	}
	for _, l := range lines {
		out <- &pb.LogMessage{TaskId: req.GetTaskId(), NodeId: node, Data: []byte(l + "\n")}
	}
	if open && req.GetFollow() {
		<-ctx.Done()
	}
	return nil
}

// logStream collects what ServiceLogs sends.
type logStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs chan *pb.LogMessage
}

func (s *logStream) Context() context.Context    { return s.ctx }
func (s *logStream) Send(m *pb.LogMessage) error { s.msgs <- m; return nil }

func logTask(id, svc, node string, slot uint64, state pb.TaskState) *pb.Task {
	return &pb.Task{Id: id, ServiceId: svc, NodeId: node, Slot: slot, DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Status: &pb.TaskStatus{State: state}, Spec: &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "busybox"}}}
}

func logsSetup(t *testing.T) (*Server, *store.MemoryStore, *fakeAgents, string) {
	s, st := newServer(t)
	f := &fakeAgents{lines: map[string][]string{}, down: map[string]bool{}, open: map[string]bool{}}
	s.cfg.Agents = f
	created, err := s.CreateService(context.Background(), &pb.CreateServiceRequest{Spec: spec("web", 3)})
	if err != nil {
		t.Fatal(err)
	}
	svc := created.GetService().GetId()
	running := pb.TaskState_TASK_STATE_RUNNING
	err = st.Update(context.Background(), func(tx store.Tx) error {
		for i, tk := range []*pb.Task{
			logTask("task1", svc, "n1", 1, running), logTask("task2", svc, "n2", 2, running),
			logTask("task3", svc, "n3", 3, running), logTask("task4", svc, "", 3, pb.TaskState_TASK_STATE_PENDING),
		} {
			f.lines[tk.GetId()] = []string{fmt.Sprintf("line of %d", i+1)}
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, st, f, svc
}

func runLogs(s *Server, req *pb.ServiceLogsRequest) (*logStream, chan error, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	ls := &logStream{ctx: ctx, msgs: make(chan *pb.LogMessage, 100)}
	done := make(chan error, 1)
	go func() { done <- s.ServiceLogs(req, ls) }()
	return ls, done, cancel
}

func (s *logStream) next(t *testing.T) *pb.LogMessage {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no log message")
		return nil
	}
}

func TestServiceLogsMergeTasksAndSayWhichNodeIsDown(t *testing.T) {
	s, _, f, _ := logsSetup(t)
	f.down["n3"] = true
	tail := int64(5)
	ls, done, cancel := runLogs(s, &pb.ServiceLogsRequest{ServiceId: "web", Tail: &tail, SinceUnixNano: 42})
	defer cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for len(ls.msgs) > 0 {
		m := <-ls.msgs
		key := fmt.Sprintf("%s.%d@%s", m.GetTaskId(), m.GetSlot(), m.GetNodeId())
		got[key] = string(m.GetData()) + m.GetError()
	}
	want := map[string]string{
		"task1.1@n1": "line of 1\n", "task2.2@n2": "line of 2\n",
		"task3.3@n3": "node n3 has no session with the managers (it is down or unreachable)",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	for _, r := range f.asked {
		if r.GetTail() != 5 || r.GetSinceUnixNano() != 42 || r.GetFollow() {
			t.Errorf("asked %v, want tail 5, since 42, no follow", r)
		}
	}
}

func TestServiceLogsFollowNewTasks(t *testing.T) {
	s, st, f, svc := logsSetup(t)
	for _, id := range []string{"task1", "task2", "task3"} {
		f.open[id] = true
	}
	f.lines["task5"] = []string{"replacement"}
	ls, done, cancel := runLogs(s, &pb.ServiceLogsRequest{ServiceId: svc, Follow: true})
	for range 3 {
		ls.next(t)
	}
	// The pending task starts on n1: its log is read from then on.
	err := st.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateTask(logTask("task5", svc, "n1", 3, pb.TaskState_TASK_STATE_RUNNING))
	})
	if err != nil {
		t.Fatal(err)
	}
	if m := ls.next(t); m.GetTaskId() != "task5" || string(m.GetData()) != "replacement\n" || m.GetSlot() != 3 {
		t.Fatalf("followed %v, want the new task's line", m)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("follow ended by the client: %v", err)
	}
}

func TestServiceLogsOfOneTaskAndUnknownTargets(t *testing.T) {
	s, _, _, _ := logsSetup(t)
	ls, done, cancel := runLogs(s, &pb.ServiceLogsRequest{ServiceId: "task2"})
	defer cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if m := ls.next(t); m.GetTaskId() != "task2" || len(ls.msgs) != 0 {
		t.Fatalf("logs of one task: %v and %d more", m, len(ls.msgs))
	}
	_, done, cancel2 := runLogs(s, &pb.ServiceLogsRequest{ServiceId: "nothing"})
	defer cancel2()
	if err := <-done; code(err) != codes.NotFound {
		t.Fatalf("unknown target: %v, want NotFound", err)
	}
	neg := int64(-1)
	_, done, cancel3 := runLogs(s, &pb.ServiceLogsRequest{ServiceId: "web", Tail: &neg})
	defer cancel3()
	if err := <-done; code(err) != codes.InvalidArgument {
		t.Fatalf("negative tail: %v, want InvalidArgument", err)
	}
}
