package raftstore

import (
	"context"
	"fmt"
	"testing"

	"berth/store"
)

// TestReadIndexOfANewLeaderIncludesEarlierWrites: a leader just elected
// after every manager restarted has applied only what it had snapshotted;
// it learns what its predecessors committed once an entry of its own term
// commits. Its read index must wait for that, or a consistent read returns
// a state older than writes already acknowledged. The fault suite
// (e2e/faults, restart-all) saw such a read. Before the fix the read index
// came from the store as it was, and this test failed at its first round.
func TestReadIndexOfANewLeaderIncludesEarlierWrites(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	for round := range 5 {
		last := fmt.Sprintf("r%d-t19", round)
		for i := range 20 {
			if err := c.update(ctx, createTask(fmt.Sprintf("r%d-t%d", round, i), uint64(i))); err != nil {
				t.Fatal(err)
			}
		}
		c.shutdownAll()
		for i := range c.nodes {
			c.start(i, nil, false)
		}
		l := c.waitLeader()
		idx, err := c.nodes[l].ReadIndex(ctx)
		if err != nil {
			t.Fatalf("round %d: read index on the new leader: %v", round, err)
		}
		if err := c.nodes[l].Store().WaitIndex(ctx, idx); err != nil {
			t.Fatal(err)
		}
		c.nodes[l].Store().View(func(tx store.ReadTx) {
			if tx.GetTask(last) == nil {
				t.Fatalf("round %d: a consistent read on the new leader (index %d) misses the acknowledged write %s", round, idx, last)
			}
		})
	}
}
