package etcdstore

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/await"
)

// leaders counts the managers leading at once, and the most ever seen.
type leaders struct {
	mu        sync.Mutex
	now, most int
	who       string
}

// fn is a manager's leader work: it counts itself in while it leads.
func (l *leaders) fn(id string) func(context.Context) error {
	return func(ctx context.Context) error {
		l.mu.Lock()
		l.now++
		l.most = max(l.most, l.now)
		l.who = id
		l.mu.Unlock()
		<-ctx.Done()
		l.mu.Lock()
		l.now--
		if l.who == id {
			l.who = ""
		}
		l.mu.Unlock()
		return nil
	}
}

func (l *leaders) leader() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.who
}

// TestOneLeaderAndHandover: of three managers one leads; when it stops,
// another is elected without waiting out the lease; never two at once.
func TestOneLeaderAndHandover(t *testing.T) {
	e := startEtcd(t)
	var l leaders
	stops := map[string]func() error{}
	for _, id := range []string{"m1", "m2", "m3"} {
		b := open(t, e, "/berth")
		b.cfg.LeaseTTL = 30 * time.Second // a handover within it proves the resign
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- b.RunWhileLeader(ctx, id, l.fn(id)) }()
		stop := sync.OnceValue(func() error { cancel(); return <-done })
		stops[id] = stop
		t.Cleanup(func() { stop() })
	}
	await.True(t, settle, func() bool { return l.leader() != "" }, "a manager leads")
	first := l.leader()
	start := time.Now()
	if err := stops[first](); err != nil {
		t.Fatalf("the leader's RunWhileLeader: %v", err)
	}
	await.True(t, settle, func() bool { return l.leader() != "" && l.leader() != first }, "another manager leads")
	if took := time.Since(start); took >= 30*time.Second {
		t.Fatalf("handover took %s: the old leader did not give its lease up", took)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.most != 1 {
		t.Fatalf("%d managers led at once", l.most)
	}
}

// TestLeaderStepsDownBeforeItsLeaseCanExpire: a leader that cannot renew
// its lease (etcd is gone) stops leading before the lease could expire,
// counted from the last renewal it saw.
func TestLeaderStepsDownBeforeItsLeaseCanExpire(t *testing.T) {
	e := startEtcd(t)
	b := open(t, e, "/berth")
	const ttl = 6 * time.Second
	b.cfg.LeaseTTL = ttl
	var leading atomic.Bool
	var ended atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- b.RunWhileLeader(ctx, "m1", func(lctx context.Context) error {
			leading.Store(true)
			<-lctx.Done()
			ended.Store(time.Now().UnixNano())
			leading.Store(false)
			return nil
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	await.True(t, settle, leading.Load, "m1 leads")
	e.stop()
	await.True(t, 2*ttl, func() bool { return !leading.Load() }, "m1 stops leading with etcd gone")
	led := time.Unix(0, ended.Load()).Sub(time.Unix(0, b.renewed.Load()))
	t.Logf("m1 stopped leading %s after its lease's last renewal (TTL %s)", led.Round(time.Millisecond), ttl)
	if led >= ttl {
		t.Fatalf("m1 led on %s after its lease's last renewal, past the TTL %s", led, ttl)
	}
}
