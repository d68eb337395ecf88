package discovery

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"berth/internal/await"
)

// testKey returns a fresh 32-byte gossip key.
func testKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatalf("gossip key: %v", err)
	}
	return k
}

// testLogger discards logs unless BERTH_TEST_LOG is set; memberlist may log
// after a test returned, so it must not write through t.
func testLogger() *slog.Logger {
	if os.Getenv("BERTH_TEST_LOG") == "" {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// member is a started Gossip on loopback plus a record of its events.
type member struct {
	g      *Gossip
	mu     sync.Mutex
	events []Event
	notify chan Event // every event, if non-nil; sends never block
	done   chan struct{}
}

// startMember starts a member on 127.0.0.1 with a free port and records its
// events until it shuts down (registered with t.Cleanup).
func startMember(t testing.TB, id string, key []byte, notify chan Event, opts ...func(*GossipConfig)) *member {
	t.Helper()
	cfg := GossipConfig{
		NodeID: id, BindAddr: "127.0.0.1", Key: key,
		Role: "worker", APIAddr: "127.0.0.1:4242", Logger: testLogger(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	g, err := NewGossip(cfg)
	if err != nil {
		t.Fatalf("new gossip %s: %v", id, err)
	}
	if err := g.Start(t.Context()); err != nil {
		t.Fatalf("start gossip %s: %v", id, err)
	}
	m := &member{g: g, notify: notify, done: make(chan struct{})}
	go m.record()
	t.Cleanup(func() {
		if err := g.Shutdown(); err != nil {
			t.Errorf("shutdown %s: %v", id, err)
		}
		<-m.done
	})
	return m
}

func (m *member) record() {
	defer close(m.done)
	for e := range m.g.Events() {
		m.mu.Lock()
		m.events = append(m.events, e)
		m.mu.Unlock()
		if m.notify != nil {
			select {
			case m.notify <- e:
			default:
			}
		}
	}
}

// saw returns the first recorded event of kind about node.
func (m *member) saw(node string, kind EventKind) (Event, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, e := range m.events {
		if e.NodeID == node && e.Kind == kind {
			return e, true
		}
	}
	return Event{}, false
}

// alive counts the members m considers alive, itself included.
func (m *member) alive() int {
	n := 0
	for _, x := range m.g.Members() {
		if x.State == MemberAlive {
			n++
		}
	}
	return n
}

// startCluster starts n members, joins them through the first, and waits
// until every member sees all n alive.
func startCluster(t testing.TB, n int, key []byte, notify chan Event) []*member {
	t.Helper()
	ms := make([]*member, n)
	for i := range ms {
		ms[i] = startMember(t, fmt.Sprintf("node-%d", i), key, notify)
		if i > 0 {
			if _, err := ms[i].g.Join(t.Context(), []string{ms[0].g.Addr()}); err != nil {
				t.Fatalf("node-%d join: %v", i, err)
			}
		}
	}
	waitAlive(t, ms, n)
	return ms
}

// waitAlive waits until every member in ms sees want members alive.
func waitAlive(t testing.TB, ms []*member, want int) {
	t.Helper()
	await.True(t, 5*time.Second, func() bool {
		for _, m := range ms {
			if m.alive() != want {
				return false
			}
		}
		return true
	}, "every member sees %d alive", want)
}
