package leadership

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/await"
)

// loops records how many terms started and how many are running.
type loops struct {
	started, running atomic.Int32
	fail             atomic.Bool
}

func (l *loops) run(ctx context.Context) error {
	l.started.Add(1)
	l.running.Add(1)
	defer l.running.Add(-1)
	if l.fail.Load() {
		return errors.New("loop failed")
	}
	<-ctx.Done()
	return ctx.Err()
}

func TestRunFollowsLeadership(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	changes := make(chan bool)
	var l loops
	done := make(chan error)
	go func() { done <- Run(ctx, changes, l.run, Options{Backoff: 10 * time.Millisecond}) }()

	changes <- true
	await.True(t, 5*time.Second, func() bool { return l.running.Load() == 1 }, "loops start on leadership")
	changes <- true // a repeat does not start a second term
	changes <- false
	await.True(t, 5*time.Second, func() bool { return l.running.Load() == 0 }, "loops stop on loss")
	if l.started.Load() != 1 {
		t.Fatalf("%d terms started, want 1", l.started.Load())
	}
	changes <- true
	await.True(t, 5*time.Second, func() bool { return l.running.Load() == 1 && l.started.Load() == 2 }, "loops restart on regain")

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if l.running.Load() != 0 {
		t.Fatal("Run returned with loops still running")
	}
}

func TestRunRestartsFailedLoopsAfterBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := make(chan bool, 1)
	var l loops
	l.fail.Store(true)
	go func() { _ = Run(ctx, changes, l.run, Options{Backoff: 20 * time.Millisecond}) }()
	changes <- true
	await.True(t, 5*time.Second, func() bool { return l.started.Load() >= 3 }, "failed loops restart while leader")
	l.fail.Store(false)
	await.True(t, 5*time.Second, func() bool { return l.running.Load() == 1 }, "loops run again once they stop failing")
	changes <- false
	await.True(t, 5*time.Second, func() bool { return l.running.Load() == 0 }, "loops stop on loss")
	n := l.started.Load()
	time.Sleep(100 * time.Millisecond) // no restart may happen while not leader
	if l.started.Load() != n {
		t.Fatal("loops restarted while not leader")
	}
}
