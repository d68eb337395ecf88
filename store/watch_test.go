package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
)

// TestViewAndWatchHasNoGap takes a view while a writer runs and checks the
// view plus the events after it hold every write exactly once, in order.
func TestViewAndWatchHasNoGap(t *testing.T) {
	s := New(nil)
	const writes = 2000
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var g errgroup.Group
	g.Go(func() error {
		for i := range writes {
			err := s.Update(ctx, func(tx Tx) error { return tx.CreateTask(task(fmt.Sprintf("t%05d", i), "s", 0, "", 0)) })
			if err != nil {
				return err
			}
		}
		return nil
	})
	await.True(t, 10*time.Second, func() bool { return s.Index() >= writes/2 }, "writes to reach mid-stream")
	seen := map[string]bool{}
	w, err := s.ViewAndWatch(ctx, func(tx ReadTx) {
		all, _ := tx.FindTasks(All)
		for _, tk := range all {
			seen[tk.Id] = true
		}
	}, Only[*berthv1.Task]())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	last := uint64(0)
	for len(seen) < writes {
		select {
		case e := <-w.Events():
			id := e.Object.(*berthv1.Task).Id
			if seen[id] || e.Index <= last {
				t.Fatalf("event %s at %d seen twice or out of order (last %d)", id, e.Index, last)
			}
			seen[id], last = true, e.Index
		case <-ctx.Done():
			t.Fatalf("only %d of %d writes seen", len(seen), writes)
		}
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

func TestWatchFromCompactedIndexFails(t *testing.T) {
	s := New(nil, WithChangelogSize(10))
	for i := range 30 {
		mustUpdate(t, s, func(tx Tx) error { return tx.CreateTask(task(fmt.Sprint(i), "s", 0, "", 0)) })
	}
	if _, err := s.Watch(context.Background(), 5); !errors.Is(err, ErrCompacted) {
		t.Fatalf("watch from 5: err %v, want ErrCompacted", err)
	}
	w, err := s.Watch(context.Background(), 25)
	if err != nil {
		t.Fatalf("watch from a kept index: %v", err)
	}
	defer w.Close()
	for want := uint64(26); want <= 30; want++ {
		if e := <-w.Events(); e.Index != want {
			t.Fatalf("replayed index %d, want %d", e.Index, want)
		}
	}
}

func TestSlowWatcherIsClosedWithLagged(t *testing.T) {
	s := New(nil, WithChangelogSize(1))
	w, err := s.Watch(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range defaultWatcherQueueSize + 200 { // never read: it must not block writers
		mustUpdate(t, s, func(tx Tx) error { return tx.CreateTask(task(fmt.Sprint(i), "s", 0, "", 0)) })
	}
	for range w.Events() {
	}
	if !errors.Is(w.Err(), ErrWatcherLagged) {
		t.Fatalf("err %v, want ErrWatcherLagged", w.Err())
	}
}

func TestWatcherStopsWithContext(t *testing.T) {
	s := New(nil)
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.Watch(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	for range w.Events() {
	}
	if w.Err() != nil {
		t.Fatalf("err %v after cancel, want nil", w.Err())
	}
	w.Close() // idempotent after the end
}

// TestWatchHeldReplaysTheBoundedHistory: a watch from the held history
// gets the changes still held, stamped with the time they were applied,
// and not those the changelog dropped.
func TestWatchHeldReplaysTheBoundedHistory(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := New(nil, WithChangelogSize(2), WithClock(func() time.Time { return at }))
	for _, id := range []string{"n1", "n2", "n3"} {
		if err := s.Update(context.Background(), func(tx Tx) error {
			return tx.CreateNode(&berthv1.Node{Id: id, Spec: &berthv1.NodeSpec{Annotations: &berthv1.Annotations{}}})
		}); err != nil {
			t.Fatal(err)
		}
	}
	w, from, err := s.WatchHeld(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if from != 1 {
		t.Fatalf("held from index %d, want 1 (the first change dropped)", from)
	}
	for _, want := range []string{"n2", "n3"} {
		select {
		case e := <-w.Events():
			if e.Object.(*berthv1.Node).GetId() != want || !e.Time.Equal(at) {
				t.Fatalf("got %v at %v, want %s at %v", e.Object, e.Time, want, at)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no event for %s", want)
		}
	}
}
