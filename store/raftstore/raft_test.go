package raftstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

func TestWritesReplicateAndFollowersPointAtLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	for i := range 20 {
		if err := c.update(ctx, createTask(fmt.Sprint("t", i), uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.waitConverged(10 * time.Second)

	l := c.leader()
	f := (l + 1) % 3
	err := c.nodes[f].Store().Update(ctx, createTask("on-follower", 1))
	var nl *NotLeaderError
	if !errors.As(err, &nl) || !errors.Is(err, store.ErrNotLeader) || nl.LeaderAddr != c.peers[l].Addr {
		t.Fatalf("write on a follower: %v, want NotLeaderError naming %s", err, c.peers[l].Addr)
	}
	// The manager's Propose handler on the leader applies a forwarded batch.
	batch := &berthv1.StoreBatch{Actions: []*berthv1.StoreAction{{
		Target: &berthv1.StoreAction_Task{Task: &berthv1.Task{Id: "forwarded"}},
	}}}
	idx, err := c.nodes[l].ApplyBatch(ctx, batch)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.nodes[f].Store().WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	c.nodes[f].Store().View(func(tx store.ReadTx) {
		if tx.GetTask("forwarded").GetMeta().GetVersion() != idx {
			t.Fatalf("forwarded task on follower: %v, want version %d", tx.GetTask("forwarded"), idx)
		}
	})
	// A conflicting batch is rejected the same way on every member.
	if _, err := c.nodes[l].ApplyBatch(ctx, batch); !errors.Is(err, store.ErrExist) {
		t.Fatalf("second create: %v, want ErrExist", err)
	}
	members, err := c.nodes[l].Members()
	if err != nil || len(members) != 3 {
		t.Fatalf("members %v, %v", members, err)
	}
}

func TestRestartAllKeepsIdenticalState(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	for i := range 50 {
		if err := c.update(ctx, createTask(fmt.Sprint("t", i), uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.waitConverged(10 * time.Second)
	before := dump(c.nodes[0].Store())
	c.shutdownAll()
	for i := range c.nodes {
		c.start(i, nil, false) // no flags beyond the data dir
	}
	c.waitLeader()
	c.waitConverged(10 * time.Second)
	for i, n := range c.nodes {
		if got := dump(n.Store()); got != before {
			t.Fatalf("node %d after restart: %s, want %s", i, got, before)
		}
	}
	if err := c.update(ctx, createTask("after-restart", 1)); err != nil {
		t.Fatal(err)
	}
}

func TestQuorumLossFailsWritesQuickly(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	if err := c.update(ctx, createTask("before", 1)); err != nil {
		t.Fatal(err)
	}
	l := c.leader()
	for i := range c.nodes {
		if i != l {
			c.stop(i)
		}
	}
	// Keep writing until the leader notices: every write must end in
	// bounded time, and soon they must fail with a clear error.
	var err error
	await.True(t, 10*time.Second, func() bool {
		start := time.Now()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err = c.nodes[l].Store().Update(wctx, createTask(fmt.Sprint("w", time.Now().UnixNano()), 1))
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("a write took %s without quorum", d)
		}
		return err != nil && errors.Is(err, store.ErrNotLeader)
	}, "writes fail once quorum is lost")
	if !strings.Contains(err.Error(), "no quorum") || !strings.Contains(err.Error(), "1 of 3 managers reachable") {
		t.Fatalf("error %q does not say quorum is lost", err)
	}
}

func TestForceNewClusterKeepsState(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	for i := range 30 {
		if err := c.update(ctx, createTask(fmt.Sprint("t", i), uint64(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.waitConverged(10 * time.Second)
	want := dump(c.nodes[0].Store())
	c.shutdownAll() // two managers are lost for good; node 0 survives

	l, err := ListenTCP(c.peers[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	cfg := c.config(0, l)
	cfg.ForceNewCluster = true
	n, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[0] = n
	await.True(t, 10*time.Second, n.IsLeader, "the survivor leads its new cluster")
	if got := dump(n.Store()); got != want {
		t.Fatal("state changed across force-new-cluster")
	}
	if err := n.Store().Update(ctx, createTask("after-recovery", 1)); err != nil {
		t.Fatal(err)
	}
	members, _ := n.Members()
	if len(members) != 1 {
		t.Fatalf("members after recovery: %v", members)
	}
}

func TestRemoveServerRefusesToLoseQuorum(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	l := c.leader()
	a, b := (l+1)%3, (l+2)%3
	c.stop(a)
	await.True(t, 10*time.Second, func() bool { return !c.nodes[l].reachable(c.peers[a].ID) }, "leader notices the dead peer")
	err := c.nodes[l].RemoveServer(ctx, c.peers[b].ID)
	if !errors.Is(err, ErrWouldLoseQuorum) || !strings.Contains(err.Error(), "only 1 of the 2 remaining managers are reachable") {
		t.Fatalf("removing a live peer while another is down: %v", err)
	}
	if err := c.nodes[l].RemoveServer(ctx, c.peers[a].ID); err != nil {
		t.Fatalf("removing the dead peer: %v", err)
	}
	if err := c.nodes[l].RemoveServer(ctx, c.peers[b].ID); err != nil {
		t.Fatalf("removing a live peer of 2: %v", err)
	}
	err = c.nodes[l].RemoveServer(ctx, c.peers[l].ID)
	if !errors.Is(err, ErrLastManager) {
		t.Fatalf("removing the last manager: %v, want ErrLastManager", err)
	}
}

func TestJoinByAddVoter(t *testing.T) {
	c := newCluster(t, 1, nil)
	ctx := context.Background()
	if err := c.update(ctx, createTask("before-join", 1)); err != nil {
		t.Fatal(err)
	}
	l, err := ListenTCP("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.peers = append(c.peers, Peer{ID: "joiner", Addr: l.Addr().String()})
	c.dirs = append(c.dirs, t.TempDir())
	c.nodes = append(c.nodes, nil)
	c.start(1, l, false)
	if err := c.nodes[0].AddVoter(ctx, "joiner", l.Addr().String()); err != nil {
		t.Fatal(err)
	}
	c.waitConverged(10 * time.Second)
}

func TestRunWhileLeaderMovesWithLeadership(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := make([]chan bool, 3)
	done := make(chan error, 3)
	for i, n := range c.nodes {
		running[i] = make(chan bool, 16)
		go func() {
			done <- n.RunWhileLeader(ctx, func(lctx context.Context) error {
				running[i] <- true
				<-lctx.Done()
				running[i] <- false
				return nil
			})
		}()
	}
	l := c.leader()
	if v := <-running[l]; !v {
		t.Fatal("leader loops did not start")
	}
	c.stop(l) // its loops must stop, and another node's must start
	if v := <-running[l]; v {
		t.Fatal("old leader's loops did not stop")
	}
	nl := c.waitLeader()
	select {
	case v := <-running[nl]:
		if !v {
			t.Fatal("new leader loops reported stop first")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("new leader's loops did not start")
	}
	if err := <-done; err != nil { // the stopped node's RunWhileLeader
		t.Fatal(err)
	}
}

func TestFSMEntryTypes(t *testing.T) {
	f := &fsm{store: store.New(nil), log: testLogger()}
	if got := f.Apply(&raft.Log{Index: 1, Type: raft.LogCommand, Data: []byte{0x81, 1, 2}}); got != nil {
		t.Fatalf("ignorable entry: %v", got)
	}
	for _, data := range [][]byte{{0x07, 1}, {entryStoreBatch, 0xff, 0xff}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("entry %x did not stop the node", data)
				}
			}()
			f.Apply(&raft.Log{Index: 2, Type: raft.LogCommand, Data: data})
		}()
	}
}

// TestFollowerForwardsWrites: with Config.Forward a write on a follower is
// committed by the leader and readable on the follower when Update returns.
func TestFollowerForwardsWrites(t *testing.T) {
	var c *testCluster
	forwarded := 0
	c = newCluster(t, 3, func(cfg *Config) {
		cfg.Forward = func(ctx context.Context, addr string, b *berthv1.StoreBatch) (uint64, error) {
			for i, p := range c.peers {
				if p.Addr == addr {
					forwarded++
					return c.nodes[i].ApplyBatch(ctx, b)
				}
			}
			return 0, fmt.Errorf("no node at %s", addr)
		}
	})
	f := (c.leader() + 1) % 3
	ctx := context.Background()
	if err := c.nodes[f].Store().Update(ctx, createTask("via-follower", 1)); err != nil {
		t.Fatalf("write on a follower: %v", err)
	}
	c.nodes[f].Store().View(func(tx store.ReadTx) {
		if tx.GetTask("via-follower") == nil {
			t.Fatal("follower does not see its own forwarded write")
		}
	})
	// A conflicting write fails on the follower's own copy, before any forwarding.
	if err := c.nodes[f].Store().Update(ctx, createTask("via-follower", 1)); !errors.Is(err, store.ErrExist) {
		t.Fatalf("conflicting write: %v, want ErrExist", err)
	}
	if forwarded != 1 {
		t.Fatalf("forwarded %d writes, want 1", forwarded)
	}
}

func TestReadIndex(t *testing.T) {
	c := newCluster(t, 3, nil)
	ctx := context.Background()
	l := c.leader()
	if err := c.update(ctx, createTask("r1", 1)); err != nil {
		t.Fatal(err)
	}
	idx, err := c.nodes[l].ReadIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if idx < c.nodes[l].AppliedIndex() || idx == 0 {
		t.Fatalf("read index %d, applied %d", idx, c.nodes[l].AppliedIndex())
	}
	f := (l + 1) % 3
	if err := c.nodes[f].Store().WaitIndex(ctx, idx); err != nil {
		t.Fatal(err)
	}
	c.nodes[f].Store().View(func(tx store.ReadTx) {
		if tx.GetTask("r1") == nil {
			t.Fatal("follower at the read index misses an acknowledged write")
		}
	})
	var nl *NotLeaderError
	if _, err := c.nodes[f].ReadIndex(ctx); !errors.As(err, &nl) {
		t.Fatalf("ReadIndex on a follower: %v, want NotLeaderError", err)
	}
}
