package dispatcher

import (
	"context"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
)

func TestExecTaskPairsTheAgentsStream(t *testing.T) {
	t.Parallel()
	h := newHarness(t, nil)
	seed(h)
	a := h.session("n1")
	h.session("n2")

	// A node without a session: said at once.
	if _, _, err := h.d.ExecTask(context.Background(), "n9", &pb.ExecStart{Task: "t9", Args: []string{"sh"}}); codeOf(err) != "Unavailable" {
		t.Fatalf("exec on a node without a session: %v, want Unavailable", err)
	}

	type result struct {
		s   pb.Dispatcher_ExecServer
		end func()
		err error
	}
	got := make(chan result, 1)
	go func() {
		s, end, err := h.d.ExecTask(context.Background(), "n1", &pb.ExecStart{Task: "t1", Args: []string{"hostname"}})
		got <- result{s, end, err}
	}()
	req := a.request()
	if req.GetExec().GetTask() != "t1" {
		t.Fatalf("request %v", req)
	}
	// n2 cannot answer n1's request.
	other, err := h.client().Exec(as(context.Background(), "n2"))
	if err != nil {
		t.Fatal(err)
	}
	_ = other.Send(&pb.ExecOutput{Kind: &pb.ExecOutput_RequestId{RequestId: req.GetId()}})
	if _, err := other.Recv(); codeOf(err) != "PermissionDenied" {
		t.Fatalf("n2 answering n1's exec: %v, want PermissionDenied", err)
	}
	st, err := h.client().Exec(as(context.Background(), "n1"))
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&pb.ExecOutput{Kind: &pb.ExecOutput_RequestId{RequestId: req.GetId()}})
	var r result
	select {
	case r = <-got:
	case <-time.After(wait):
		t.Fatal("ExecTask did not return the agent's stream")
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	if err := r.s.Send(&pb.ExecInput{Kind: &pb.ExecInput_Stdin{Stdin: []byte("in")}}); err != nil {
		t.Fatal(err)
	}
	if in, err := st.Recv(); err != nil || string(in.GetStdin()) != "in" {
		t.Fatalf("agent got %v, %v", in, err)
	}
	_ = st.Send(&pb.ExecOutput{Kind: &pb.ExecOutput_ExitCode{ExitCode: 4}})
	if out, err := r.s.Recv(); err != nil || out.GetExitCode() != 4 {
		t.Fatalf("asker got %v, %v", out, err)
	}
	r.end()
	if _, err := st.Recv(); err == nil {
		t.Fatal("the agent's stream goes on after the asker ended it")
	}
}
