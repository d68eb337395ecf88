package etcdstore

import (
	"context"
	"sync"
	"testing"
	"time"

	"berth/internal/await"
)

// TestObserveLeaderFollowsTheElection: an observer is told the value the
// leader campaigned with, and the next leader's when it stops.
func TestObserveLeaderFollowsTheElection(t *testing.T) {
	e := startEtcd(t)
	var mu sync.Mutex
	seen := ""
	obs := open(t, e, "/berth")
	octx, ocancel := context.WithCancel(context.Background())
	odone := make(chan error, 1)
	go func() {
		odone <- obs.ObserveLeader(octx, func(v string) { mu.Lock(); seen = v; mu.Unlock() })
	}()
	t.Cleanup(func() { ocancel(); <-odone })
	current := func() string { mu.Lock(); defer mu.Unlock(); return seen }

	stops := map[string]func(){}
	for _, id := range []string{"m1 127.0.0.1:1", "m2 127.0.0.1:2"} {
		b := open(t, e, "/berth")
		b.cfg.LeaseTTL = 30 * time.Second
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- b.RunWhileLeader(ctx, id, func(lctx context.Context) error { <-lctx.Done(); return nil })
		}()
		stops[id] = sync.OnceFunc(func() { cancel(); <-done })
		t.Cleanup(stops[id])
	}
	await.True(t, settle, func() bool { _, ok := stops[current()]; return ok }, "the observer names a leader")
	first := current()
	stops[first]()
	await.True(t, settle, func() bool { v := current(); _, ok := stops[v]; return ok && v != first }, "the observer names the next leader")

	idx, err := obs.ReadIndex(t.Context())
	if err != nil || idx != 0 {
		t.Fatalf("ReadIndex with no write yet: %d, %v; want 0", idx, err)
	}
	run(t, obs)
	if err := create(t.Context(), obs, service("s1", "web")); err != nil {
		t.Fatal(err)
	}
	if idx, err := obs.ReadIndex(t.Context()); err != nil || idx != uint64(modRevision(t, e, "/berth/batch")) {
		t.Fatalf("ReadIndex after a write: %d, %v; want the batch key's revision %d", idx, err, modRevision(t, e, "/berth/batch"))
	}
}
