package dispatcher

import (
	"context"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
)

func TestTaskStatsRelayOnlyTheTasksAskedLabelledWithTheNode(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	b := h.session("n2")
	out, done := make(chan []*pb.TaskStats, 10), make(chan error, 1)
	go func() {
		done <- h.d.TaskStats(context.Background(), "n1", &pb.TaskStatsRequest{TaskIds: []string{"t1"}, Once: true}, out)
	}()
	req := a.request()
	if ids := req.GetStats().GetTaskIds(); len(ids) != 1 || ids[0] != "t1" || !req.GetStats().GetOnce() {
		t.Fatalf("request %v", req)
	}

	other, err := h.client().PublishStats(as(context.Background(), "n2"))
	if err != nil {
		t.Fatal(err)
	}
	_ = other.Send(&pb.PublishStatsRequest{SessionId: b.sid, RequestId: req.GetId()})
	if _, err := other.CloseAndRecv(); codeOf(err) != "PermissionDenied" {
		t.Errorf("n2 answering n1's stats request: %v, want PermissionDenied", err)
	}

	stream, err := h.client().PublishStats(as(context.Background(), "n1"))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&pb.PublishStatsRequest{SessionId: a.sid, RequestId: req.GetId()})
	_ = stream.Send(&pb.PublishStatsRequest{SessionId: a.sid, Stats: []*pb.TaskStats{
		{TaskId: "t1", NodeId: "forged", MemoryBytes: 7},
		{TaskId: "not-asked", MemoryBytes: 9},
	}})
	select {
	case round := <-out:
		if len(round) != 1 || round[0].GetTaskId() != "t1" || round[0].GetNodeId() != "n1" || round[0].GetMemoryBytes() != 7 {
			t.Fatalf("relayed %v, want t1's sample alone, labelled n1", round)
		}
	case <-time.After(wait):
		t.Fatal("no sample relayed")
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("TaskStats after the agent closed its answer: %v", err)
	}
}

func TestTaskStatsOfANodeThatIsDownSaySo(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	err := h.d.TaskStats(context.Background(), "n1", &pb.TaskStatsRequest{TaskIds: []string{"t1"}}, make(chan []*pb.TaskStats))
	if codeOf(err) != "Unavailable" {
		t.Fatalf("stats of a node without a session: %v, want Unavailable", err)
	}
	a := h.session("n1")
	done := make(chan error, 1)
	go func() {
		done <- h.d.TaskStats(context.Background(), "n1", &pb.TaskStatsRequest{TaskIds: []string{"t1"}}, make(chan []*pb.TaskStats))
	}()
	a.request()
	a.cancel()
	select {
	case err := <-done:
		if codeOf(err) != "Unavailable" {
			t.Fatalf("stats when the session ends: %v, want Unavailable", err)
		}
	case <-time.After(wait):
		t.Fatal("TaskStats hangs after the node's session ended")
	}
}
