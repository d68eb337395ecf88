package raftstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// kvInput is one operation of the register-per-key model: a put of value,
// or a get.
type kvInput struct {
	put        bool
	key, value uint64
}

// kvModel is a map of registers (0 = absent), partitioned by key.
var kvModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		by := map[uint64][]porcupine.Operation{}
		for _, op := range h {
			k := op.Input.(kvInput).key
			by[k] = append(by[k], op)
		}
		var out [][]porcupine.Operation
		for _, ops := range by {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return uint64(0) },
	Step: func(state, input, output any) (bool, any) {
		in := input.(kvInput)
		if in.put {
			return true, in.value
		}
		return output.(uint64) == state.(uint64), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(kvInput)
		if in.put {
			return fmt.Sprintf("put(%d, %d)", in.key, in.value)
		}
		return fmt.Sprintf("get(%d) -> %v", in.key, output)
	},
}

// history records operations from many clients.
type history struct {
	mu    sync.Mutex
	start time.Time
	ops   []porcupine.Operation
}

func (h *history) now() int64 { return int64(time.Since(h.start)) }

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func kvKey(k uint64) string { return fmt.Sprint("key-", k) }

// put stores value under key as the slot of a task.
func put(key, value uint64) func(store.Tx) error {
	return func(tx store.Tx) error {
		cur := tx.GetTask(kvKey(key))
		if cur == nil {
			return tx.CreateTask(&berthv1.Task{Id: kvKey(key), Slot: value})
		}
		next := proto.Clone(cur).(*berthv1.Task)
		next.Slot = value
		return tx.UpdateTask(next)
	}
}

// TestLeaderKillDuringWritesLosesNothing kills the leader during a stream
// of writes and checks the history (acknowledged, failed and unknown writes,
// then reads of every key) is linearizable: no acknowledged write is lost.
func TestLeaderKillDuringWritesLosesNothing(t *testing.T) {
	for _, size := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d managers", size), func(t *testing.T) { testLeaderKill(t, size) })
	}
}

func testLeaderKill(t *testing.T, size int) {
	c := newCluster(t, size, nil)
	const keys, writers = 8, 4
	h := &history{start: time.Now()}
	var acked, nextValue atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for {
				select {
				case <-stop:
					return
				default:
				}
				in := kvInput{put: true, key: rng.Uint64N(keys), value: nextValue.Add(1)}
				call := h.now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				err := c.update(ctx, put(in.key, in.value))
				cancel()
				switch {
				case err == nil:
					acked.Add(1)
					h.add(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: uint64(0), Return: h.now()})
				case errors.Is(err, store.ErrOutcomeUnknown), errors.Is(err, context.DeadlineExceeded):
					h.add(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: uint64(0), Return: math.MaxInt64})
				default: // surely not applied: not the leader, version conflict
				}
			}
		}()
	}
	await.True(t, 20*time.Second, func() bool { return acked.Load() >= 100 }, "writes before the kill")
	l := c.leader()
	if l < 0 {
		t.Fatal("no leader before the kill")
	}
	killed := acked.Load()
	_ = c.nodes[l].Shutdown() // no leave: peers just lose it
	await.True(t, 20*time.Second, func() bool { return acked.Load() >= killed+100 }, "writes are accepted again after the kill")
	close(stop)
	wg.Wait()

	c.nodes[l] = nil
	c.sync(10 * time.Second)
	nl := c.leader()
	c.nodes[nl].Store().View(func(tx store.ReadTx) {
		for k := range uint64(keys) {
			call := h.now()
			h.add(porcupine.Operation{ClientId: writers, Input: kvInput{key: k}, Call: call, Output: tx.GetTask(kvKey(k)).GetSlot(), Return: h.now()})
		}
	})
	res := porcupine.CheckOperationsTimeout(kvModel, h.ops, 20*time.Second)
	if res != porcupine.Ok {
		t.Fatalf("history of %d operations is %v: an acknowledged write was lost or reordered", len(h.ops), res)
	}
	c.waitConverged(10 * time.Second)
	t.Logf("%d managers: %d acknowledged writes, %d operations in history", size, acked.Load(), len(h.ops))
}
