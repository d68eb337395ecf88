package deploy

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// flakyProposer applies batches to its store, but refuses those that
// write tasks with the errors queued in fail, one per batch.
type flakyProposer struct {
	st   *store.MemoryStore
	mu   sync.Mutex
	fail []error
}

func (p *flakyProposer) Propose(_ context.Context, b *pb.StoreBatch) (uint64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.fail) > 0 && b.GetActions()[0].GetTask() != nil {
		err := p.fail[0]
		p.fail = p.fail[1:]
		return 0, err
	}
	index := p.st.Index() + 1
	return index, p.st.Apply(index, b)
}

func (p *flakyProposer) failing() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.fail)
}

func flakyStore(clock *fakeClock, fail ...error) (*store.MemoryStore, *flakyProposer) {
	p := &flakyProposer{fail: fail}
	p.st = store.New(p, store.WithClock(clock.Now))
	return p.st, p
}

func TestWriteFailureRetriedAfterBackoff(t *testing.T) {
	clock := newFakeClock()
	st, p := flakyStore(clock, store.ErrOutcomeUnknown, store.ErrOutcomeUnknown)
	e := start(t, st, clock, 0)
	svc := e.createService(replicated("web", 2))
	for _, backoff := range []time.Duration{minRetry, 2 * minRetry} {
		due := clock.Now().Add(backoff)
		await.True(t, wait, func() bool { return clock.waitingFor(due) }, "retry after %v", backoff)
		if n := len(e.tasks(svc)); n != 0 {
			t.Fatalf("%d tasks while the store refuses them", n)
		}
		clock.Advance(backoff)
	}
	e.awaitSlots(svc, "1", "2")
	if p.failing() != 0 {
		t.Errorf("not every refusal was met")
	}
}

func TestConflictReplannedAtOnce(t *testing.T) {
	clock := newFakeClock()
	st, _ := flakyStore(clock, store.ErrSequenceConflict, store.ErrSequenceConflict, store.ErrSequenceConflict)
	e := start(t, st, clock, 0)
	svc := e.createService(replicated("web", 2))
	e.awaitSlots(svc, "1", "2") // no clock advance: conflicts are retried without a backoff
}

func TestRunStopsWhenLeadershipIsLost(t *testing.T) {
	clock := newFakeClock()
	st, _ := flakyStore(clock, store.ErrNotLeader)
	o, err := New(Config{Store: st, Now: clock.Now, After: clock.After})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- o.Run(context.Background()) }()
	if err := st.Update(context.Background(), func(tx store.Tx) error {
		return tx.CreateService(&pb.Service{Id: "svc", Spec: replicated("web", 1), SpecVersion: 1})
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, store.ErrNotLeader) {
			t.Errorf("Run: %v, want ErrNotLeader", err)
		}
	case <-time.After(wait):
		t.Fatal("Run went on after the store said it is not the leader")
	}
}
