package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"berth/internal/await"
)

// TestAgentFollowsGossipKeyRotation: each step of a gossip key rotation a
// session carries reaches OnGossip as the key to encrypt with and the
// keys to accept — a key no longer listed is dropped — within the one
// session, with no reconnect.
func TestAgentFollowsGossipKeyRotation(t *testing.T) {
	needRoot(t)
	c := newFakeCluster(t)
	c.gossipKey = []byte("k1")
	m := startFakeManager(t, c, "mgr1")
	var mu sync.Mutex
	var got []string
	last := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(got) == 0 {
			return ""
		}
		return got[len(got)-1]
	}
	a, err := New(Config{
		DataDir: testDir(t), Join: []string{m.addr}, Token: c.token.String(), CgroupParent: cgroupParent(),
		Logger: slog.New(slog.DiscardHandler),
		OnGossip: func(key []byte, accept [][]byte, _ []string) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, keys(key, accept))
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	await.True(t, 20*time.Second, func() bool { return last() == "k1 []" }, "the first session message hands over k1")
	for _, step := range []struct {
		key    string
		accept []string
	}{{"k1", []string{"k2"}}, {"k2", []string{"k1"}}, {"k2", nil}} {
		var acc [][]byte
		for _, k := range step.accept {
			acc = append(acc, []byte(k))
		}
		c.setGossipKeys([]byte(step.key), acc)
		want := keys([]byte(step.key), acc)
		await.True(t, 20*time.Second, func() bool { return last() == want }, "the agent takes %s (last %s)", want, last())
	}
	if n := sessionsOn(c, m.addr); n != 1 {
		t.Fatalf("%d sessions during the rotation, want the one", n)
	}
}

func keys(key []byte, accept [][]byte) string {
	var acc []string
	for _, k := range accept {
		acc = append(acc, string(k))
	}
	return fmt.Sprint(string(key), " ", acc)
}
