package raftstore

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/hashicorp/raft"

	"berth/internal/await"
	"berth/store"
)

// childEnv carries a child node's config; when set, TestMain runs the child.
const childEnv = "BERTH_RAFTSTORE_CHILD"

type childConfig struct {
	Dir   string
	Peers []Peer
}

func TestMain(m *testing.M) {
	if raw := os.Getenv(childEnv); raw != "" {
		runChild(raw)
		return
	}
	os.Exit(m.Run())
}

// runChild holds node 0 of the peers and serves "put key value" lines on
// stdin, answering "ok", "fail <err>" (surely not applied) or
// "unknown <err>".
func runChild(raw string) {
	var cfg childConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "child config:", err)
		os.Exit(2)
	}
	l, err := ListenTCP(cfg.Peers[0].Addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	n, err := Open(context.Background(), Config{DataDir: cfg.Dir, NodeID: cfg.Peers[0].ID, Addr: cfg.Peers[0].Addr,
		StreamLayer: l, Bootstrap: true, Peers: cfg.Peers, Logger: testLogger()})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var k, v uint64
		if _, err := fmt.Sscanf(sc.Text(), "put %d %d", &k, &v); err != nil {
			fmt.Println("fail", err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := n.Store().Update(ctx, put(k, v))
		cancel()
		switch {
		case err == nil:
			fmt.Println("ok")
		case errors.Is(err, store.ErrOutcomeUnknown), errors.Is(err, context.DeadlineExceeded):
			fmt.Println("unknown", err)
		default:
			fmt.Println("fail", err)
		}
	}
	_ = n.Shutdown()
}

// child is a node in another process, driven over its stdin.
type child struct {
	mu  sync.Mutex
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func (c *child) put(k, v uint64) (ok, unknown bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := fmt.Fprintf(c.in, "put %d %d\n", k, v); err != nil {
		return false, true
	}
	if !c.out.Scan() {
		return false, true // killed mid-write: the outcome is unknown
	}
	line := c.out.Text()
	return line == "ok", len(line) >= 7 && line[:7] == "unknown"
}

// TestKill9LeaderProcess runs the leader in a child process, kill -9s it
// during a stream of writes, and checks the history is linearizable.
func TestKill9LeaderProcess(t *testing.T) {
	c := &testCluster{t: t, nodes: make([]*Node, 3)}
	layers := make([]*TCPStreamLayer, 3)
	for i := range 3 {
		l, err := ListenTCP("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		layers[i] = l
		c.peers = append(c.peers, Peer{ID: fmt.Sprintf("m%d", i), Addr: l.Addr().String()})
		c.dirs = append(c.dirs, t.TempDir())
	}
	_ = layers[0].Close() // the child listens there
	t.Cleanup(c.shutdownAll)

	raw, _ := json.Marshal(childConfig{Dir: c.dirs[0], Peers: c.peers})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(raw))
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	ch := &child{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	for i := 1; i < 3; i++ {
		c.start(i, layers[i], true)
	}
	// Make the child the leader.
	childLeads := func() bool { id, _ := c.nodes[1].Leader(); return id == c.peers[0].ID }
	await.True(t, 20*time.Second, func() bool {
		if l := c.leader(); l > 0 {
			_ = c.nodes[l].raft.LeadershipTransferToServer(raft.ServerID(c.peers[0].ID), raft.ServerAddress(c.peers[0].Addr)).Error()
		}
		return childLeads()
	}, "the child process leads")

	h := &history{start: time.Now()}
	var acked, next atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			for {
				select {
				case <-stop:
					return
				default:
				}
				in := kvInput{put: true, key: rng.Uint64N(8), value: next.Add(1)}
				call := h.now()
				var ok, unknown bool
				if childLeads() && c.leader() < 0 {
					ok, unknown = ch.put(in.key, in.value)
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := c.update(ctx, put(in.key, in.value))
					cancel()
					ok = err == nil
					unknown = errors.Is(err, store.ErrOutcomeUnknown) || errors.Is(err, context.DeadlineExceeded)
				}
				switch {
				case ok:
					acked.Add(1)
					h.add(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: uint64(0), Return: h.now()})
				case unknown:
					h.add(porcupine.Operation{ClientId: w, Input: in, Call: call, Output: uint64(0), Return: math.MaxInt64})
				}
			}
		}()
	}
	await.True(t, 20*time.Second, func() bool { return acked.Load() >= 100 }, "writes through the child leader")
	killed := acked.Load()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL
		t.Fatal(err)
	}
	await.True(t, 20*time.Second, func() bool { return acked.Load() >= killed+100 }, "writes are accepted again after kill -9")
	close(stop)
	wg.Wait()
	c.sync(10 * time.Second)
	c.nodes[c.leader()].Store().View(func(tx store.ReadTx) {
		for k := range uint64(8) {
			call := h.now()
			h.add(porcupine.Operation{ClientId: 4, Input: kvInput{key: k}, Call: call, Output: tx.GetTask(kvKey(k)).GetSlot(), Return: h.now()})
		}
	})
	if res := porcupine.CheckOperationsTimeout(kvModel, h.ops, 20*time.Second); res != porcupine.Ok {
		t.Fatalf("history of %d operations is %v after kill -9 of the leader", len(h.ops), res)
	}
	t.Logf("%d acknowledged writes (%d through the child before kill -9)", acked.Load(), killed)
}
