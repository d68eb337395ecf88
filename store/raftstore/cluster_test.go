package raftstore

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// testCluster is n Raft nodes on loopback, each with its own data dir.
type testCluster struct {
	t     testing.TB
	peers []Peer
	dirs  []string
	nodes []*Node // nil when down
	tune  func(*Config)
}

func testLogger() *slog.Logger {
	if os.Getenv("BERTH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// newCluster starts n nodes bootstrapped together and waits for a leader.
func newCluster(t testing.TB, n int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, tune: tune, nodes: make([]*Node, n)}
	layers := make([]*TCPStreamLayer, n)
	for i := range n {
		l, err := ListenTCP("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		layers[i] = l
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("m%d", i), Addr: l.Addr().String()})
		c.dirs = append(c.dirs, t.TempDir())
	}
	t.Cleanup(c.shutdownAll)
	for i := range n {
		c.start(i, layers[i], true)
	}
	c.waitLeader()
	return c
}

func (c *testCluster) config(i int, l *TCPStreamLayer) Config {
	cfg := Config{
		DataDir: c.dirs[i], NodeID: c.peers[i].ID, Addr: c.peers[i].Addr, StreamLayer: l,
		Peers: c.peers, Logger: testLogger().With("test_node", c.peers[i].ID),
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

// start opens node i (on its old address when l is nil).
func (c *testCluster) start(i int, l *TCPStreamLayer, bootstrap bool) {
	c.t.Helper()
	if l == nil {
		var err error
		if l, err = ListenTCP(c.peers[i].Addr); err != nil {
			c.t.Fatal(err)
		}
	}
	cfg := c.config(i, l)
	cfg.Bootstrap = bootstrap
	n, err := Open(context.Background(), cfg)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nodes[i] = n
}

func (c *testCluster) stop(i int) {
	if c.nodes[i] != nil {
		_ = c.nodes[i].Shutdown()
		c.nodes[i] = nil
	}
}

func (c *testCluster) shutdownAll() {
	for i := range c.nodes {
		c.stop(i)
	}
}

// leader returns the index of the live leader, or -1.
func (c *testCluster) leader() int {
	for i, n := range c.nodes {
		if n != nil && n.IsLeader() {
			return i
		}
	}
	return -1
}

func (c *testCluster) waitLeader() int {
	c.t.Helper()
	await.True(c.t, 15*time.Second, func() bool { return c.leader() >= 0 }, "a leader is elected")
	return c.leader()
}

// update writes through the current leader, as a manager forwarding to it
// would.
func (c *testCluster) update(ctx context.Context, cb func(store.Tx) error) error {
	i := c.leader()
	if i < 0 {
		for _, n := range c.nodes {
			if n != nil {
				return n.Store().Update(ctx, cb) // fails with "no leader"
			}
		}
		return errors.New("no node is up")
	}
	return c.nodes[i].Store().Update(ctx, cb)
}

// sync waits until every live node applied all the leader committed.
func (c *testCluster) sync(timeout time.Duration) {
	c.t.Helper()
	var idx uint64
	await.NoError(c.t, timeout, func() error {
		l := c.leader()
		if l < 0 {
			return errors.New("no leader")
		}
		var err error
		idx, err = c.nodes[l].Barrier(context.Background())
		return err
	}, "leader barrier")
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for i, n := range c.nodes {
		if n != nil {
			if err := n.Store().WaitIndex(ctx, idx); err != nil {
				c.t.Fatalf("node %d: %v", i, err)
			}
		}
	}
}

// waitConverged waits until every live node holds the same objects.
func (c *testCluster) waitConverged(timeout time.Duration) {
	c.t.Helper()
	c.sync(timeout)
	await.True(c.t, timeout, func() bool {
		var want string
		for _, n := range c.nodes {
			if n == nil {
				continue
			}
			got := dump(n.Store())
			if want == "" {
				want = got
			} else if got != want {
				return false
			}
		}
		return true
	}, "all live nodes converge to one state")
}

// dump fingerprints a store's tasks and services: their count and a hash
// of their deterministic encoding, in ID order.
func dump(s *store.MemoryStore) string {
	h := fnv.New128a()
	var n int
	opts := proto.MarshalOptions{Deterministic: true}
	var buf []byte
	s.View(func(tx store.ReadTx) {
		ts, _ := tx.FindTasks(store.All)
		ss, _ := tx.FindServices(store.All)
		n = len(ts) + len(ss)
		for _, t := range ts {
			buf, _ = opts.MarshalAppend(buf[:0], t)
			h.Write(buf)
		}
		for _, sv := range ss {
			buf, _ = opts.MarshalAppend(buf[:0], sv)
			h.Write(buf)
		}
	})
	return fmt.Sprintf("%d objects, %x", n, h.Sum(nil))
}

func createTask(id string, slot uint64) func(store.Tx) error {
	return func(tx store.Tx) error {
		return tx.CreateTask(&berthv1.Task{Id: id, ServiceId: "svc", Slot: slot})
	}
}
