package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

func TestReporterCoalescesRetriesAndKeepsOrder(t *testing.T) {
	var mu sync.Mutex
	var batches [][]*pb.TaskStatusUpdate
	fail := 2
	send := func(ctx context.Context, u []*pb.TaskStatusUpdate) error {
		mu.Lock()
		defer mu.Unlock()
		if fail > 0 {
			fail--
			return errors.New("manager unavailable")
		}
		batches = append(batches, u)
		return nil
	}
	r := newReporter(send, slog.New(slog.DiscardHandler))
	at := func(s pb.TaskState, msg string) *pb.TaskStatus {
		return &pb.TaskStatus{State: s, Message: msg, Timestamp: timestamppb.Now()}
	}
	r.Put("a", at(pb.TaskState_TASK_STATE_PREPARING, "preparing"))
	r.Put("a", at(pb.TaskState_TASK_STATE_RUNNING, "started"))
	r.Put("a", at(pb.TaskState_TASK_STATE_STARTING, "late")) // backwards: dropped
	r.Put("b", at(pb.TaskState_TASK_STATE_REJECTED, "rejected"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	await.True(t, 5*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return len(batches) > 0 }, "a batch is delivered after failures")
	mu.Lock()
	got := batches[0]
	mu.Unlock()
	if len(got) != 2 {
		t.Fatalf("batch of %d updates, want one per task: %v", len(got), got)
	}
	for _, u := range got {
		if u.TaskId == "a" && u.Status.GetMessage() != "started" {
			t.Errorf("task a: sent %q, want the latest status", u.Status.GetMessage())
		}
	}
	r.Put("a", at(pb.TaskState_TASK_STATE_PREPARING, "stale progress"))
	r.mu.Lock()
	n := len(r.pending)
	r.mu.Unlock()
	if n != 0 {
		t.Errorf("a status older than one already sent was queued")
	}
}

func TestBackoffGrowsToMax(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: 2 * time.Second}
	var last time.Duration
	for range 10 {
		last = b.next()
		if last < 50*time.Millisecond || last > 2*time.Second {
			t.Fatalf("delay %s out of [min/2, max]", last)
		}
	}
	if last < time.Second {
		t.Errorf("after 10 failures the delay is %s, want about max", last)
	}
}
