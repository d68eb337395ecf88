package controlapi

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
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
	select {
	case out <- round:
	case <-ctx.Done():
		return nil
	}
	if !req.GetOnce() {
		<-ctx.Done() // a stream goes on until the client leaves
	}
	return nil
}

type statsStream struct {
	grpc.ServerStream
	ctx  context.Context
	mu   sync.Mutex
	msgs []*pb.StatsMessage
}

func (s *statsStream) Context() context.Context { return s.ctx }
func (s *statsStream) Send(m *pb.StatsMessage) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgs = append(s.msgs, m)
	return nil
}

// lines are the samples sent so far, one line each, sorted.
func (s *statsStream) lines() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var got []string
	for _, m := range s.msgs {
		for _, x := range m.GetStats() {
			got = append(got, fmt.Sprintf("%s %s@%s mem=%d gone=%v err=%q", x.GetName(), x.GetTaskId(), x.GetNodeId(), x.GetMemoryBytes(), x.GetGone(), x.GetError()))
		}
	}
	sort.Strings(got)
	return got
}

func TestStatsOfAServiceNameTasksAndSayWhichNodeIsDown(t *testing.T) {
	s, _, f, _ := logsSetup(t)
	f.down["n3"] = true
	sa := &statsAgents{fakeAgents: f}
	s.cfg.Agents = sa
	st := &statsStream{ctx: context.Background()}
	if err := s.Stats(&pb.StatsRequest{Services: []string{"web"}, NoStream: true}, st); err != nil {
		t.Fatal(err)
	}
	got := st.lines()
	want := []string{
		`web.1 task1@n1 mem=1 gone=false err=""`,
		`web.2 task2@n2 mem=2 gone=false err=""`,
		`web.3 task3@n3 mem=0 gone=false err="node n3 has no session with the managers (it is down or unreachable)"`,
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

// TestStatsFollowTasksThatStartAndStop: a live view gets the samples of
// a task that starts running later, and a gone message for one that
// stops.
func TestStatsFollowTasksThatStartAndStop(t *testing.T) {
	s, st, f, svc := logsSetup(t)
	s.cfg.Agents = &statsAgents{fakeAgents: f}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ss := &statsStream{ctx: ctx}
	done := make(chan error, 1)
	go func() { done <- s.Stats(&pb.StatsRequest{Services: []string{"web"}}, ss) }()
	has := func(line string) func() bool {
		return func() bool { return slices.Contains(ss.lines(), line) }
	}
	await.True(t, 10*time.Second, has(`web.2 task2@n2 mem=2 gone=false err=""`), "no sample of task2: %v", ss.lines())

	err := st.Update(context.Background(), func(tx store.Tx) error {
		t2 := proto.Clone(tx.GetTask("task2")).(*pb.Task)
		t2.DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN
		if err := tx.UpdateTask(t2); err != nil {
			return err
		}
		return tx.CreateTask(logTask("task5", svc, "n1", 5, pb.TaskState_TASK_STATE_RUNNING))
	})
	if err != nil {
		t.Fatal(err)
	}
	await.True(t, 10*time.Second, has(`web.2 task2@n2 mem=0 gone=true err=""`), "task2 stopped, not said gone: %v", ss.lines())
	await.True(t, 10*time.Second, has(`web.5 task5@n1 mem=5 gone=false err=""`), "task5 started, not sampled: %v", ss.lines())
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
