package raftstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// TestRemovedNodeSurvivesSnapshotAndRestart: a node's removal reaches
// every member through the log, and is still known after every member
// restarted from a snapshot that compacted the entry away: no member
// creates that node again.
func TestRemovedNodeSurvivesSnapshotAndRestart(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) {
		cfg.SnapshotThreshold = 4
		cfg.SnapshotInterval = 100 * time.Millisecond
		cfg.TrailingLogs = 2
	})
	ctx := context.Background()
	if err := c.update(ctx, func(tx store.Tx) error { return tx.CreateNode(&berthv1.Node{Id: "gone"}) }); err != nil {
		t.Fatal(err)
	}
	if err := c.update(ctx, func(tx store.Tx) error { return tx.DeleteNode("gone") }); err != nil {
		t.Fatal(err)
	}
	removedAt := c.nodes[c.leader()].Store().Index()
	for i := range 20 { // enough entries to snapshot and compact past the removal
		if err := c.update(ctx, createTask(fmt.Sprint("t", i), uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.sync(10 * time.Second)
	for i, n := range c.nodes {
		await.True(t, 20*time.Second, func() bool {
			first, err := n.bolt.FirstIndex()
			return err == nil && first > removedAt
		}, "node %d compacts its log past the removal (entry %d)", i, removedAt)
	}
	c.shutdownAll()
	for i := range c.nodes {
		c.start(i, nil, false)
	}
	c.waitLeader()
	c.sync(10 * time.Second)
	for i, n := range c.nodes {
		var rec *berthv1.RemovedNode
		n.Store().View(func(tx store.ReadTx) { rec = tx.GetRemovedNode("gone") })
		if rec == nil || rec.GetRemovedAt() == nil {
			t.Fatalf("node %d forgot the removal after a restart from its snapshot", i)
		}
	}
	err := c.update(ctx, func(tx store.Tx) error { return tx.CreateNode(&berthv1.Node{Id: "gone"}) })
	if !errors.Is(err, store.ErrNodeRemoved) {
		t.Fatalf("create the removed node again: %v, want ErrNodeRemoved", err)
	}
}
