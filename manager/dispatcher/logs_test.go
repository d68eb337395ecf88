package dispatcher

import (
	"context"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
	"berth/store"
)

func TestPublishLogsReachesSubscribersOfTheService(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	h.update(func(tx store.Tx) error {
		tk := task("other", "n1", running, running)
		tk.ServiceId = "svc2"
		return tx.CreateTask(tk)
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	lines := h.d.SubscribeLogs(ctx, "svc")

	stream, err := h.client().PublishLogs(as(context.Background(), "n1"))
	if err != nil {
		t.Fatal(err)
	}
	msgs := []*pb.LogMessage{
		{TaskId: "t2", NodeId: "n1", Data: []byte("n2's task: dropped\n")},
		{TaskId: "other", Data: []byte("another service: not for this subscriber\n")},
		{TaskId: "t1", NodeId: "forged", Data: []byte("hello\n")},
	}
	if err := stream.Send(&pb.PublishLogsRequest{SessionId: a.sid, Messages: msgs}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-lines:
		if m.GetTaskId() != "t1" || string(m.GetData()) != "hello\n" || m.GetNodeId() != "n1" {
			t.Fatalf("got %v, want t1's line with node n1", m)
		}
	case <-time.After(wait):
		t.Fatal("no log line reached the subscriber")
	}
	select {
	case m := <-lines:
		t.Fatalf("unexpected line %v", m)
	default:
	}

	bad, err := h.client().PublishLogs(as(context.Background(), "n1"))
	if err != nil {
		t.Fatal(err)
	}
	_ = bad.Send(&pb.PublishLogsRequest{SessionId: "stale"})
	if _, err := bad.CloseAndRecv(); codeOf(err) != "FailedPrecondition" {
		t.Errorf("publish with an unknown session: %v, want FailedPrecondition", err)
	}
}
