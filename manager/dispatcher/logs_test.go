package dispatcher

import (
	"context"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
)

// request waits for the next AgentRequest the session carries.
func (a *agent) request() *pb.AgentRequest {
	a.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m := <-a.msgs:
			if rs := m.GetRequests(); len(rs) > 0 {
				return rs[0]
			}
		case err := <-a.err:
			a.t.Fatalf("session of %s ended: %v", a.node, err)
		case <-timeout:
			a.t.Fatalf("no request for %s within %s", a.node, wait)
		}
	}
}

// taskLogs runs TaskLogs in the background; its lines go to out.
func taskLogs(h *harness, node string, req *pb.TaskLogsRequest) (chan *pb.LogMessage, chan error) {
	out, done := make(chan *pb.LogMessage, 100), make(chan error, 1)
	go func() { done <- h.d.TaskLogs(context.Background(), node, req, out) }()
	return out, done
}

func TestTaskLogsAskTheNodeAndRelayItsLines(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	b := h.session("n2")
	out, done := taskLogs(h, "n1", &pb.TaskLogsRequest{TaskId: "t1", Follow: true})
	req := a.request()
	if req.GetLogs().GetTaskId() != "t1" || !req.GetLogs().GetFollow() || req.GetId() == "" {
		t.Fatalf("request %v", req)
	}

	// Another node cannot answer it.
	other, err := h.client().PublishLogs(as(context.Background(), "n2"))
	if err != nil {
		t.Fatal(err)
	}
	_ = other.Send(&pb.PublishLogsRequest{SessionId: b.sid, RequestId: req.GetId()})
	if _, err := other.CloseAndRecv(); codeOf(err) != "PermissionDenied" {
		t.Errorf("n2 answering n1's request: %v, want PermissionDenied", err)
	}

	stream, err := h.client().PublishLogs(as(context.Background(), "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.PublishLogsRequest{SessionId: a.sid, RequestId: req.GetId(), Messages: []*pb.LogMessage{
		{TaskId: "forged", NodeId: "forged", Data: []byte("hello\n"), TimestampUnixNano: 7},
	}}); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-out:
		if m.GetTaskId() != "t1" || m.GetNodeId() != "n1" || string(m.GetData()) != "hello\n" || m.GetTimestampUnixNano() != 7 {
			t.Fatalf("relayed %v, want t1's line labelled with n1", m)
		}
	case <-time.After(wait):
		t.Fatal("no line relayed")
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("TaskLogs after the agent closed its answer: %v", err)
	}
}

func TestTaskLogsOfANodeThatIsDownSaySo(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	_, done := taskLogs(h, "n1", &pb.TaskLogsRequest{TaskId: "t1"})
	select {
	case err := <-done:
		if codeOf(err) != "Unavailable" {
			t.Fatalf("logs of a node without a session: %v, want Unavailable", err)
		}
	case <-time.After(wait):
		t.Fatal("TaskLogs hangs for a node without a session")
	}

	// The node's session ends while it serves: the asker hears of it.
	a := h.session("n1")
	_, done = taskLogs(h, "n1", &pb.TaskLogsRequest{TaskId: "t1", Follow: true})
	a.request()
	a.cancel()
	select {
	case err := <-done:
		if codeOf(err) != "Unavailable" {
			t.Fatalf("logs when the session ends: %v, want Unavailable", err)
		}
	case <-time.After(wait):
		t.Fatal("TaskLogs hangs after the node's session ended")
	}
}

func TestTaskLogsErrorFromTheAgent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	_, done := taskLogs(h, "n1", &pb.TaskLogsRequest{TaskId: "t1"})
	req := a.request()
	stream, err := h.client().PublishLogs(as(context.Background(), "n1"))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&pb.PublishLogsRequest{SessionId: a.sid, RequestId: req.GetId(), Error: "read log: disk on fire"})
	_, _ = stream.CloseAndRecv()
	if err := <-done; codeOf(err) != "FailedPrecondition" {
		t.Fatalf("agent error: %v, want FailedPrecondition with its message", err)
	}

	// An unknown request is refused.
	bad, _ := h.client().PublishLogs(as(context.Background(), "n1"))
	_ = bad.Send(&pb.PublishLogsRequest{SessionId: a.sid, RequestId: "nope"})
	if _, err := bad.CloseAndRecv(); codeOf(err) != "NotFound" {
		t.Errorf("answer to an unknown request: %v, want NotFound", err)
	}
	stale, _ := h.client().PublishLogs(as(context.Background(), "n1"))
	_ = stale.Send(&pb.PublishLogsRequest{SessionId: "stale", RequestId: req.GetId()})
	if _, err := stale.CloseAndRecv(); codeOf(err) != "FailedPrecondition" {
		t.Errorf("publish with an unknown session: %v, want FailedPrecondition", err)
	}
}

func TestTaskLogsCancelledTellsTheAgent(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- h.d.TaskLogs(ctx, "n1", &pb.TaskLogsRequest{TaskId: "t1", Follow: true}, make(chan *pb.LogMessage))
	}()
	req := a.request()
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("TaskLogs cancelled: %v", err)
	}
	if c := a.request(); !c.GetCancel() || c.GetId() != req.GetId() {
		t.Fatalf("after the asker left the agent got %v, want a cancel of %s", c, req.GetId())
	}
}
