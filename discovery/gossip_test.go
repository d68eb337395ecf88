package discovery

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/internal/await"
)

func TestNewGossipRejectsBadConfig(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	cases := []struct {
		name string
		cfg  GossipConfig
		want string
	}{
		{"no node id", GossipConfig{Key: key}, "NodeID is required"},
		{"no key", GossipConfig{NodeID: "n1"}, "Key is required"},
		{"short key", GossipConfig{NodeID: "n1", Key: key[:16]}, "Key is 16 bytes, want 32"},
		{"bad port", GossipConfig{NodeID: "n1", Key: key, BindPort: 70000}, "BindPort 70000"},
		{"meta too big", GossipConfig{NodeID: "n1", Key: key, Meta: map[string]string{"x": strings.Repeat("a", 600)}}, "limit 512"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := NewGossip(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewGossip error = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestMembersCarryMetadata(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 2, testKey(t), nil)
	var peer Member
	for _, m := range ms[0].g.Members() {
		if m.NodeID == "node-1" {
			peer = m
		}
	}
	if peer.Role != "worker" || peer.APIAddr != "127.0.0.1:4242" || peer.Addr != ms[1].g.Addr() {
		t.Fatalf("node-0 sees node-1 as %+v, want role worker, api 127.0.0.1:4242, addr %s", peer, ms[1].g.Addr())
	}
	// Events reach the consumer through a queue, after Members shows them.
	await.True(t, 5*time.Second, func() bool {
		e, ok := ms[0].saw("node-1", EventJoin)
		return ok && e.Role == "worker"
	}, "node-0 gets a join event for node-1 with its role")
	if _, ok := ms[0].saw("node-0", EventJoin); ok {
		t.Fatalf("node-0 got an event about itself")
	}

	if err := ms[1].g.SetMeta(t.Context(), map[string]string{"zone": "b"}); err != nil {
		t.Fatalf("SetMeta: %v", err)
	}
	await.True(t, 5*time.Second, func() bool {
		e, ok := ms[0].saw("node-1", EventUpdate)
		return ok && e.Meta["zone"] == "b"
	}, "node-0 sees node-1's metadata update")
}

func TestAbruptShutdownIsDead(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 5, testKey(t), nil)
	victim, peers := ms[4], ms[:4]
	stopped := time.Now()
	if err := victim.g.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	await.True(t, 5*time.Second, func() bool {
		for _, p := range peers {
			if _, ok := p.saw("node-4", EventDead); !ok {
				return false
			}
		}
		return true
	}, "every peer sees node-4 dead")
	var first, last time.Duration
	for i, p := range peers {
		e, _ := p.saw("node-4", EventDead)
		d := e.At.Sub(stopped)
		if i == 0 || d < first {
			first = d
		}
		last = max(last, d)
		if p.g.IsAlive("node-4") {
			t.Errorf("%s still reports node-4 alive", p.g.NodeID())
		}
	}
	t.Logf("dead detection after abrupt shutdown: first peer %v, all 4 peers %v", first.Round(time.Millisecond), last.Round(time.Millisecond))
}

func TestGracefulLeaveIsNotDead(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 4, testKey(t), nil)
	leaver, peers := ms[3], ms[:3]
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	if err := leaver.g.Leave(ctx); err != nil {
		t.Fatalf("leave: %v", err)
	}
	if err := leaver.g.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	await.True(t, 5*time.Second, func() bool {
		for _, p := range peers {
			if _, ok := p.saw("node-3", EventLeave); !ok {
				return false
			}
		}
		return true
	}, "every peer sees node-3 leave")
	for _, p := range peers {
		if e, ok := p.saw("node-3", EventDead); ok {
			t.Errorf("%s reported a graceful leave as dead: %+v", p.g.NodeID(), e)
		}
		for _, m := range p.g.Members() {
			if m.NodeID == "node-3" && m.State != MemberLeft {
				t.Errorf("%s has node-3 in state %s, want left", p.g.NodeID(), m.State)
			}
		}
	}
}

func TestRestartedNodeIsAliveAgain(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	ms := startCluster(t, 3, key, nil)
	oldAddr := ms[2].g.Addr()
	if err := ms[2].g.Shutdown(); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	await.True(t, 5*time.Second, func() bool {
		_, a := ms[0].saw("node-2", EventDead)
		_, b := ms[1].saw("node-2", EventDead)
		return a && b
	}, "peers see node-2 dead")

	again := startMember(t, "node-2", key, nil)
	if again.g.Addr() == oldAddr {
		t.Fatalf("restarted member reused %s; the test needs a new port", oldAddr)
	}
	if _, err := again.g.Join(t.Context(), []string{ms[0].g.Addr()}); err != nil {
		t.Fatalf("rejoin: %v", err)
	}
	await.True(t, 5*time.Second, func() bool {
		for _, p := range ms[:2] {
			e, ok := p.saw("node-2", EventAlive)
			if !ok || e.Addr != again.g.Addr() || !p.g.IsAlive("node-2") {
				return false
			}
		}
		return true
	}, "peers see node-2 alive again at %s", again.g.Addr())
}

func TestWrongKeyCannotJoin(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 2, testKey(t), nil)
	intruder := startMember(t, "intruder", testKey(t), nil)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	n, err := intruder.g.Join(ctx, []string{ms[0].g.Addr()})
	if err == nil || !strings.Contains(err.Error(), "gossip key") {
		t.Fatalf("join with wrong key = %d, %v; want an error naming the gossip key", n, err)
	}
	t.Logf("wrong-key join error: %v", err)
	for _, m := range ms[0].g.Members() {
		if m.NodeID == "intruder" {
			t.Fatalf("node-0 lists the intruder: %+v", m)
		}
	}
}

// TestNoFalseDeadUnderLoad keeps every core busy while a healthy cluster
// runs. Under make test the other test packages (with -race) load the box
// as well, so a starved member may be judged dead for a moment; what must
// hold is that every such verdict is refuted: once the load ends, every
// member sees all five alive. (The leader also ignores a gossip death for
// an agent that heartbeated just now.) The false verdicts are logged.
func TestNoFalseDeadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("burns every core for 10 s")
	}
	ms := startCluster(t, 5, testKey(t), nil)
	burn(t.Context(), runtime.NumCPU(), 10*time.Second)
	await.True(t, 10*time.Second, func() bool {
		for _, m := range ms {
			if m.alive() != 5 {
				return false
			}
		}
		return true
	}, "after the load every member sees all 5 alive")
	verdicts := 0
	for _, m := range ms {
		for _, other := range ms {
			if e, ok := m.saw(other.g.NodeID(), EventDead); ok {
				verdicts++
				t.Logf("%s falsely saw %s dead at %s (refuted since)", m.g.NodeID(), e.NodeID, e.At.Format(time.StampMilli))
			}
		}
	}
	t.Logf("%d false dead verdicts under load, all refuted", verdicts)
}

// burn spins one goroutine per core for d and returns when all stopped.
func burn(ctx context.Context, cores int, d time.Duration) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	var wg sync.WaitGroup
	for range cores {
		wg.Go(func() {
			x := 0
			for ctx.Err() == nil {
				for i := range 100_000 {
					x += i
				}
			}
			_ = x
		})
	}
	wg.Wait()
}

func TestShutdownClosesEvents(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	g, err := NewGossip(GossipConfig{NodeID: "n", BindAddr: "127.0.0.1", Key: key})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Join(t.Context(), []string{"127.0.0.1:1"}); err == nil {
		t.Fatalf("Join before Start succeeded")
	}
	if err := g.Shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, ok := <-g.Events(); ok {
		t.Fatalf("events channel still open after Shutdown")
	}
	if err := g.Start(t.Context()); err == nil {
		t.Fatalf("Start after Shutdown succeeded")
	}
}

func TestStartContextEndStopsMember(t *testing.T) {
	t.Parallel()
	g, err := NewGossip(GossipConfig{NodeID: "n", BindAddr: "127.0.0.1", Key: testKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	await.True(t, 5*time.Second, func() bool {
		_, err := g.Join(t.Context(), []string{"127.0.0.1:1"})
		return err != nil && strings.Contains(err.Error(), ErrClosed.Error())
	}, "member stops when Start's context ends")
	if err := g.Shutdown(); err != nil {
		t.Fatal(err)
	}
	for range g.Events() {
	}
}

func TestLeaveRacingShutdownDoesNotPanic(t *testing.T) {
	t.Parallel()
	ms := startCluster(t, 2, testKey(t), nil)
	var wg sync.WaitGroup
	wg.Go(func() {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		_ = ms[1].g.Leave(ctx) // may lose the race: ErrClosed is fine
	})
	wg.Go(func() { _ = ms[1].g.Shutdown() })
	wg.Wait()
	if err := ms[1].g.Leave(t.Context()); err == nil {
		t.Fatalf("Leave after Shutdown succeeded")
	}
}
