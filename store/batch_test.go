package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/proto"

	berthv1 "berth/proto/berth/v1"
)

// failingProposer applies batches as a log would (through the wire
// format), and fails proposal number failAt (from 1) without applying it.
type failingProposer struct {
	s        *MemoryStore
	index    uint64
	failAt   int32
	proposed atomic.Int32
}

var errProposal = errors.New("proposal refused")

func (p *failingProposer) Propose(_ context.Context, b *berthv1.StoreBatch) (uint64, error) {
	if p.proposed.Add(1) == p.failAt {
		return 0, errProposal
	}
	raw, err := proto.Marshal(b)
	if err != nil {
		return 0, err
	}
	var dec berthv1.StoreBatch
	if err := proto.Unmarshal(raw, &dec); err != nil {
		return 0, err
	}
	p.index += 3
	return p.index, p.s.Apply(p.index, &dec)
}

// TestBatchUpdatesAcrossEntries writes the same tasks again and again in
// one Batch of small entries, so that an entry updates what the entry
// before it (still committing) wrote: every write lands, in order.
func TestBatchUpdatesAcrossEntries(t *testing.T) {
	for _, withProposer := range []bool{false, true} {
		t.Run(fmt.Sprint("proposer=", withProposer), func(t *testing.T) {
			var s *MemoryStore
			p := &failingProposer{}
			if withProposer {
				s = New(p, WithMaxBatchBytes(2000))
				p.s = s
			} else {
				s = New(nil, WithMaxBatchBytes(2000))
			}
			err := s.Batch(context.Background(), func(b *Batch) error {
				for i := range 50 {
					if err := b.Update(func(tx Tx) error { return tx.CreateTask(task(fmt.Sprint("t", i), "s", 0, "", 0)) }); err != nil {
						return err
					}
				}
				for round := range 5 {
					for i := range 50 {
						err := b.Update(func(tx Tx) error {
							u := proto.Clone(tx.GetTask(fmt.Sprint("t", i))).(*berthv1.Task)
							u.Slot = uint64(round + 1)
							return tx.UpdateTask(u)
						})
						if err != nil {
							return fmt.Errorf("round %d task %d: %w", round, i, err)
						}
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			s.View(func(tx ReadTx) {
				all, _ := tx.FindTasks(All)
				for _, tk := range all {
					if tk.GetSlot() != 5 {
						t.Fatalf("task %s at slot %d, want 5 (the last write)", tk.GetId(), tk.GetSlot())
					}
				}
				if len(all) != 50 {
					t.Fatalf("%d tasks, want 50", len(all))
				}
			})
		})
	}
}

// TestBatchStopsAtAFailedEntry: when an entry's proposal fails, Batch
// returns that error, the entries before it stay written, and none after
// it is proposed.
func TestBatchStopsAtAFailedEntry(t *testing.T) {
	p := &failingProposer{failAt: 2}
	s := New(p, WithMaxBatchBytes(500))
	p.s = s
	err := s.Batch(context.Background(), func(b *Batch) error {
		for i := range 200 {
			if err := b.Update(func(tx Tx) error { return tx.CreateTask(task(fmt.Sprintf("t%03d", i), "s", 0, "", 0)) }); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, errProposal) {
		t.Fatalf("batch: %v, want the proposal's error", err)
	}
	if got := p.proposed.Load(); got != 2 {
		t.Fatalf("%d proposals, want 2: none after the failed one", got)
	}
	s.View(func(tx ReadTx) {
		all, _ := tx.FindTasks(All)
		if len(all) == 0 || len(all) >= 100 || all[0].GetId() != "t000" {
			t.Fatalf("%d tasks written, want the first entry's only", len(all))
		}
	})
}
