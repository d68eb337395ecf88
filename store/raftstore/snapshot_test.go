package raftstore

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// TestSnapshotCompactionRestore100k writes 100k tasks, lets the snapshot
// threshold compact the log, restarts every node from its snapshot, and
// joins a new node that can only catch up by snapshot.
func TestSnapshotCompactionRestore100k(t *testing.T) {
	if testing.Short() {
		t.Skip("100k-task snapshot test skipped in -short mode")
	}
	total := 100_000
	if raceEnabled {
		total = 20_000 // keeps -race runs near 20 s; run without -race for 100k
		t.Logf("race detector on: %d tasks instead of 100k", total)
	}
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 8
		cfg.SnapshotInterval = 200 * time.Millisecond
		cfg.TrailingLogs = 5
		cfg.StoreOptions = []store.Option{store.WithMaxBatchBytes(4 << 20)}
	})
	ctx := context.Background()
	// Chunks through whoever leads: under a loaded CI box (-race, heavy
	// snapshotting) leadership may move mid-way; a chunk is then done again
	// on the new leader, skipping the tasks that made it.
	const chunk = 2000
	for from := 0; from < total; from += chunk {
		await.NoError(t, 60*time.Second, func() error {
			return c.nodes[c.waitLeader()].Store().Batch(ctx, func(b *store.Batch) error {
				for i := from; i < min(from+chunk, total); i++ {
					err := b.Update(func(tx store.Tx) error {
						if tx.GetTask("task-"+strconv.Itoa(i)) != nil {
							return nil
						}
						return tx.CreateTask(&berthv1.Task{Id: "task-" + strconv.Itoa(i), ServiceId: fmt.Sprint("svc-", i%100), Slot: uint64(i)})
					})
					if err != nil {
						return err
					}
				}
				return nil
			})
		}, "create tasks %d..%d", from, from+chunk)
	}
	l := c.waitLeader()
	c.sync(20 * time.Second)
	for i, n := range c.nodes {
		await.True(t, 20*time.Second, func() bool {
			first, err := n.bolt.FirstIndex()
			return err == nil && first > 1 && n.raft.Stats()["last_snapshot_index"] != "0"
		}, "node %d snapshots and compacts its log", i)
	}
	want := dump(c.nodes[l].Store())

	c.shutdownAll()
	for i := range c.nodes {
		c.start(i, nil, false)
	}
	c.waitLeader()
	c.sync(20 * time.Second)
	for i, n := range c.nodes {
		if dump(n.Store()) != want {
			t.Fatalf("node %d differs after restart from its snapshot", i)
		}
	}

	l2, err := ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.peers = append(c.peers, Peer{ID: "late", Addr: l2.Addr().String()})
	c.dirs = append(c.dirs, t.TempDir())
	c.nodes = append(c.nodes, nil)
	c.start(3, l2, false)
	await.NoError(t, 20*time.Second, func() error { return c.nodes[c.waitLeader()].AddVoter(ctx, "late", l2.Addr().String()) }, "add a late voter")
	c.sync(30 * time.Second)
	if dump(c.nodes[3].Store()) != want {
		t.Fatal("a node that joined after compaction differs")
	}
	c.nodes[3].Store().View(func(tx store.ReadTx) {
		if got, _ := tx.FindTasks(store.ByServiceID("svc-7")); len(got) != total/100 {
			t.Fatalf("indexes after restore: %d tasks of svc-7, want %d", len(got), total/100)
		}
	})
}
