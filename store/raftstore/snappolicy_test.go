package raftstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// fillTasks writes n tasks of about size bytes each, from task number from,
// with Batch through node n.
func fillTasks(t testing.TB, n *Node, from, count, size int) {
	t.Helper()
	pad := strings.Repeat("x", size)
	err := n.Store().Batch(context.Background(), func(b *store.Batch) error {
		for i := from; i < from+count; i++ {
			err := b.Update(func(tx store.Tx) error {
				return tx.CreateTask(&berthv1.Task{Id: "task-" + strconv.Itoa(i), ServiceId: fmt.Sprint("svc-", i%10), Slot: uint64(i),
					Status: &berthv1.TaskStatus{Message: pad}})
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func lastSnapshotIndex(n *Node) string { return n.raft.Stats()["last_snapshot_index"] }

// TestSnapshotByLogBytes: with raft's entry count out of reach, a snapshot
// is taken once the log since the last one passes SnapshotMinBytes, and
// the next one only when the log reaches half that snapshot's size.
func TestSnapshotByLogBytes(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.SnapshotMinBytes = 256 << 10
		cfg.SnapshotThreshold = 1 << 30 // never by count
		cfg.SnapshotInterval = time.Hour
		cfg.StoreOptions = []store.Option{store.WithMaxBatchBytes(64 << 10)}
	})
	n := c.nodes[0]
	fillTasks(t, n, 0, 100, 1000) // ~100 KB: under the threshold
	c.sync(10 * time.Second)
	if got := lastSnapshotIndex(n); got != "0" {
		t.Fatalf("snapshot at index %s after 100 KB of log, want none under 256 KB", got)
	}
	fillTasks(t, n, 100, 300, 1000) // ~400 KB in all
	await.True(t, 20*time.Second, func() bool { return lastSnapshotIndex(n) != "0" }, "a snapshot once the log passes 256 KB")

	// The state is now ~400 KB; the next snapshot comes at max(256 KB, half
	// of it), so 150 KB more takes none and 300 KB more takes one.
	first := lastSnapshotIndex(n)
	fillTasks(t, n, 400, 150, 1000)
	c.sync(10 * time.Second)
	if got := lastSnapshotIndex(n); got != first {
		t.Fatalf("snapshot at index %s after 150 KB more, want still %s", got, first)
	}
	fillTasks(t, n, 550, 150, 1000)
	await.True(t, 20*time.Second, func() bool { return lastSnapshotIndex(n) != first }, "a second snapshot after the log passes 256 KB again")
}

// TestRestartFromSnapshotHasEveryObject restarts a node whose state is in
// a snapshot plus a log after it: every object is back, the snapshot was
// restored (not the whole log replayed), and writes go on.
func TestRestartFromSnapshotHasEveryObject(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) {
		cfg.SnapshotMinBytes = 256 << 10
		cfg.StoreOptions = []store.Option{store.WithMaxBatchBytes(64 << 10)}
	})
	fillTasks(t, c.nodes[0], 0, 1000, 500)
	await.True(t, 20*time.Second, func() bool { return lastSnapshotIndex(c.nodes[0]) != "0" }, "a snapshot")
	fillTasks(t, c.nodes[0], 1000, 50, 500) // in the log after the snapshot
	c.sync(10 * time.Second)
	want := dump(c.nodes[0].Store())

	c.stop(0)
	c.start(0, nil, false)
	n := c.nodes[0]
	if lastSnapshotIndex(n) == "0" {
		t.Fatal("restarted without a snapshot to restore")
	}
	c.waitLeader()
	// A consistent read (what the Control API does first) sees the log
	// after the snapshot too, not only the snapshot.
	if _, err := n.ReadIndex(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := dump(n.Store()); got != want {
		t.Fatalf("after restart: %s, want %s", got, want)
	}
	if err := n.Store().Update(context.Background(), createTask("after-restart", 1)); err != nil {
		t.Fatalf("write after restart: %v", err)
	}
}

// TestBatchSplitsIntoEntriesThroughRaft: a Batch far larger than one entry
// goes out as several entries of bounded size, and every change lands
// once, on every member.
func TestBatchSplitsIntoEntriesThroughRaft(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.StoreOptions = []store.Option{store.WithMaxBatchBytes(64 << 10)}
	})
	l := c.nodes[c.leader()]
	before := l.Store().Index()
	fillTasks(t, l, 0, 2000, 200) // ~500 KB
	entries := l.Store().Index() - before
	if entries < 6 || entries > 12 {
		t.Fatalf("2,000 tasks of ~250 bytes in 64 KiB entries took %d entries, want 6-12", entries)
	}
	c.waitConverged(20 * time.Second)
	for i, n := range c.nodes {
		n.Store().View(func(tx store.ReadTx) {
			all, _ := tx.FindTasks(store.All)
			seen := map[string]bool{}
			for _, tk := range all {
				if seen[tk.GetId()] || tk.GetMeta().GetVersion() <= before {
					t.Fatalf("node %d: task %s twice or at version %d", i, tk.GetId(), tk.GetMeta().GetVersion())
				}
				seen[tk.GetId()] = true
			}
			if len(all) != 2000 {
				t.Fatalf("node %d holds %d tasks, want 2000", i, len(all))
			}
		})
	}
}

// TestFailedProposalFailsTheBatch: a Batch whose proposal fails (here a
// follower with no way to forward) returns that error to the caller, and
// nothing of it is written.
func TestFailedProposalFailsTheBatch(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leader()
	f := c.nodes[(l+1)%3]
	err := f.Store().Batch(context.Background(), func(b *store.Batch) error {
		for i := range 10 {
			if err := b.Update(createTask(fmt.Sprint("lost-", i), uint64(i))); err != nil {
				return err
			}
		}
		return nil
	})
	if !errors.Is(err, store.ErrNotLeader) {
		t.Fatalf("batch on a follower: %v, want ErrNotLeader", err)
	}
	c.sync(10 * time.Second)
	c.nodes[l].Store().View(func(tx store.ReadTx) {
		if got, _ := tx.FindTasks(store.All); len(got) != 0 {
			t.Fatalf("%d tasks written by a failed batch", len(got))
		}
	})
}
