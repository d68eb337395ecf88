package telemetry

import (
	"context"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	"berth/internal/metrics"
	"berth/internal/metrics/metricstest"
	pb "berth/proto/berth/v1"
	"berth/store"
)

func task(id string, state pb.TaskState) *pb.Task {
	return &pb.Task{Id: id, ServiceId: "s1", Slot: 1, DesiredState: pb.TaskState_TASK_STATE_RUNNING, Status: &pb.TaskStatus{State: state}}
}

// attachment is a standalone container's network attachment: no service's
// task, so no metric of tasks counts it.
func attachment(id string, state pb.TaskState) *pb.Task {
	return &pb.Task{Id: id, NodeId: "n1", DesiredState: pb.TaskState_TASK_STATE_RUNNING, Status: &pb.TaskStatus{State: state},
		Spec: &pb.TaskSpec{Attachment: &pb.NetworkAttachmentSpec{ContainerId: id}}}
}

// TestManagerMetricsFromTheStore: tasks and nodes by state are the
// store's; a task assigned 2 s and running 5 s after its creation is
// timed so; the hooks count. Standalone containers' attachments are not
// tasks to count or time.
func TestManagerMetricsFromTheStore(t *testing.T) {
	created := time.Unix(1000, 0)
	st := store.New(nil, store.WithClock(func() time.Time { return created }))
	ctx := t.Context()
	err := st.Update(ctx, func(tx store.Tx) error {
		for _, tk := range []*pb.Task{task("t1", pb.TaskState_TASK_STATE_PENDING), task("t2", pb.TaskState_TASK_STATE_RUNNING),
			attachment("a1", pb.TaskState_TASK_STATE_RUNNING), attachment("a2", pb.TaskState_TASK_STATE_PENDING)} {
			if err := tx.CreateTask(tk); err != nil {
				return err
			}
		}
		return tx.CreateNode(&pb.Node{Id: "n1", Spec: &pb.NodeSpec{}, Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}})
	})
	if err != nil {
		t.Fatal(err)
	}
	reg := metrics.NewRegistry()
	m := New(reg)
	wctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Watch(wctx, st) }()
	srv := httptest.NewServer(metrics.Handler(reg, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	scrape := func() metricstest.Families {
		f, err := metricstest.Scrape(ctx, srv.URL+"/metrics")
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	// The watch is up once the collector is registered.
	await.True(t, 5*time.Second, func() bool { _, ok := scrape().Value("berth_tasks", "state", "running"); return ok }, "no berth_tasks")

	for _, step := range []struct {
		state pb.TaskState
		after time.Duration
	}{{pb.TaskState_TASK_STATE_ASSIGNED, 2 * time.Second}, {pb.TaskState_TASK_STATE_RUNNING, 5 * time.Second}} {
		err := st.Update(ctx, func(tx store.Tx) error {
			for _, id := range []string{"t1", "a2"} {
				tk := proto.Clone(tx.GetTask(id)).(*pb.Task) // store objects are immutable
				tk.Status = &pb.TaskStatus{State: step.state, Timestamp: timestamppb.New(created.Add(step.after))}
				if err := tx.UpdateTask(tk); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	m.Heartbeat()
	m.Heartbeat()
	m.RaftCommit(3 * time.Millisecond)
	m.LeaderChange("n1")
	await.True(t, 5*time.Second, func() bool {
		n, _ := scrape().Value("berth_tasks_convergence_latency_seconds")
		return n == 1
	}, "the task's start was not timed")

	f := scrape()
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"berth_tasks", []string{"state", "running"}, 2},
		{"berth_tasks", []string{"state", "pending"}, 0},
		{"berth_nodes", []string{"state", "ready", "availability", "active"}, 1},
		{"berth_nodes", []string{"state", "down", "availability", "active"}, 0},
		{"berth_scheduler_scheduling_latency_seconds", nil, 1},
		{"berth_dispatcher_heartbeats_total", nil, 2},
		{"berth_raft_commit_duration_seconds", nil, 1},
		{"berth_raft_leader_changes_total", nil, 1},
	} {
		if got, ok := f.Value(c.name, c.labels...); !ok || got != c.want {
			t.Errorf("%s%v = %v (found %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if s := f.Sum("berth_scheduler_scheduling_latency_seconds"); s != 2 {
		t.Errorf("scheduling latency = %v s, want 2 (created at T, assigned at T+2s)", s)
	}
	if s := f.Sum("berth_tasks_convergence_latency_seconds"); s != 5 {
		t.Errorf("convergence latency = %v s, want 5 (created at T, running at T+5s)", s)
	}
	if _, ok := f.Value("go_goroutines"); !ok {
		t.Errorf("no Go runtime metrics: %s", f)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatalf("Watch: %v", err)
	}
}

// TestNilMetricsCountNothing: parts call their hooks whether metrics are
// on or not.
func TestNilMetricsCountNothing(t *testing.T) {
	var m *Metrics
	m.Heartbeat()
	m.RaftCommit(time.Second)
	m.LeaderChange("")
}
