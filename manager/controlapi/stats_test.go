package controlapi

import (
	"context"
	"fmt"
	"sort"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// statsAgents answers TaskStats with one sample per task whose memory is
// its task's number; nodes in down have no session.
type statsAgents struct {
	*fakeAgents
	asked []*pb.TaskStatsRequest
}

func (f *statsAgents) TaskStats(ctx context.Context, node string, req *pb.TaskStatsRequest, out chan<- []*pb.TaskStats) error {
	f.mu.Lock()
	f.asked = append(f.asked, req)
	down := f.down[node]
	f.mu.Unlock()
	if down {
		return status.Errorf(codes.Unavailable, "node %s has no session with the managers (it is down or unreachable)", node)
	}
	var round []*pb.TaskStats
	for _, t := range req.GetTaskIds() {
		var n uint64
		fmt.Sscanf(t, "task%d", &n)
		round = append(round, &pb.TaskStats{TaskId: t, NodeId: node, MemoryBytes: n})
	}
	out <- round
	return nil
}

type statsStream struct {
	grpc.ServerStream
	ctx  context.Context
	msgs []*pb.StatsMessage
}

func (s *statsStream) Context() context.Context      { return s.ctx }
func (s *statsStream) Send(m *pb.StatsMessage) error { s.msgs = append(s.msgs, m); return nil }

func TestStatsOfAServiceNameTasksAndSayWhichNodeIsDown(t *testing.T) {
	s, _, f, _ := logsSetup(t)
	f.down["n3"] = true
	sa := &statsAgents{fakeAgents: f}
	s.cfg.Agents = sa
	st := &statsStream{ctx: context.Background()}
	if err := s.Stats(&pb.StatsRequest{Services: []string{"web"}, NoStream: true}, st); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range st.msgs {
		for _, x := range m.GetStats() {
			got = append(got, fmt.Sprintf("%s %s@%s mem=%d err=%q", x.GetName(), x.GetTaskId(), x.GetNodeId(), x.GetMemoryBytes(), x.GetError()))
		}
	}
	sort.Strings(got)
	want := []string{
		`web.1 task1@n1 mem=1 err=""`,
		`web.2 task2@n2 mem=2 err=""`,
		`web.3 task3@n3 mem=0 err="node n3 has no session with the managers (it is down or unreachable)"`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("got\n%v\nwant\n%v", got, want)
	}
	for _, r := range sa.asked {
		if !r.GetOnce() || len(r.GetTaskIds()) != 1 {
			t.Errorf("asked %v, want one running task, once", r)
		}
	}

	err := s.Stats(&pb.StatsRequest{Services: []string{"nope"}}, &statsStream{ctx: context.Background()})
	if status.Code(err) != codes.NotFound {
		t.Errorf("stats of an unknown service: %v, want NotFound", err)
	}
}
