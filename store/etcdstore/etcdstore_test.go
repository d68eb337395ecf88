package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// TestTwoManagersSeeEveryWriteOnce: what one manager writes, the other
// applies, at the same version (etcd's revision), and a store watcher
// sees each change once, in order.
func TestTwoManagersSeeEveryWriteOnce(t *testing.T) {
	e := startEtcd(t)
	a, b := open(t, e, "/berth"), open(t, e, "/berth")
	run(t, a)
	run(t, b)
	ctx := t.Context()
	w, err := b.Store().Watch(ctx, b.Store().Index(), store.Only[*berthv1.Service]())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	if err := create(ctx, a, service("s1", "web")); err != nil {
		t.Fatal(err)
	}
	v1 := getService(a, "s1").GetMeta().GetVersion()
	if want := uint64(modRevision(t, e, "/berth/objects/service/s1")); v1 != want {
		t.Fatalf("version %d, etcd revision %d: want them equal", v1, want)
	}
	awaitService(t, b, "s1", v1)
	err = b.Store().Update(ctx, func(tx store.Tx) error {
		s := proto.Clone(tx.GetService("s1")).(*berthv1.Service)
		s.Spec.Annotations.Labels = map[string]string{"v": "2"}
		return tx.UpdateService(s)
	})
	if err != nil {
		t.Fatal(err)
	}
	v2 := getService(b, "s1").GetMeta().GetVersion()
	awaitService(t, a, "s1", v2)

	var got []string
	for len(got) < 2 {
		select {
		case ev := <-w.Events():
			got = append(got, fmt.Sprintf("%v@%d", ev.Kind, ev.Index))
		case <-time.After(settle):
			t.Fatalf("watcher saw %v, want two events", got)
		}
	}
	if want := []string{fmt.Sprintf("%v@%d", store.EventCreate, v1), fmt.Sprintf("%v@%d", store.EventUpdate, v2)}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("watcher saw %v, want %v", got, want)
	}
	select {
	case ev := <-w.Events():
		t.Fatalf("an extra event: %v@%d", ev.Kind, ev.Index)
	case <-time.After(200 * time.Millisecond):
	}
}

// TestStaleWriteFailsAndIsNeverAppliedTwice: a write built on a view
// another manager has since changed fails as the store fails it (a stale
// version; a name taken meanwhile), leaving etcd as the first write left
// it; one that still fits the newer state is retried and lands once.
func TestStaleWriteFailsAndIsNeverAppliedTwice(t *testing.T) {
	e := startEtcd(t)
	a, b := open(t, e, "/berth"), open(t, e, "/berth")
	run(t, a)
	ctx := t.Context()
	if err := create(ctx, a, service("s1", "web")); err != nil {
		t.Fatal(err)
	}
	// b loads the state now and does not follow it (not running) until
	// its writes are under way: they are built on this view.
	b = open(t, e, "/berth")
	stale := getService(b, "s1")
	err := a.Store().Update(ctx, func(tx store.Tx) error {
		s := proto.Clone(tx.GetService("s1")).(*berthv1.Service)
		s.Spec.Annotations.Labels = map[string]string{"by": "a"}
		return tx.UpdateService(s)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := create(ctx, a, service("s2", "db")); err != nil {
		t.Fatal(err)
	}
	afterA := modRevision(t, e, "/berth/batch")

	errs := make(chan error, 3)
	go func() {
		s := proto.Clone(stale).(*berthv1.Service)
		s.Spec.Annotations.Labels = map[string]string{"by": "b"}
		errs <- b.Store().Update(ctx, func(tx store.Tx) error { return tx.UpdateService(s) })
	}()
	go func() { errs <- create(ctx, b, service("s3", "db")) }()
	go func() { errs <- create(ctx, b, service("s4", "cache")) }()
	await.True(t, settle, func() bool { return len(errs) == 0 }, "b's writes are under way")
	// The first reaches etcd and loses (the others queue behind it).
	await.True(t, settle, func() bool { return b.lost.Load() > 0 }, "b's first write lost its race in etcd")
	run(t, b)
	var got []string
	for range 3 {
		select {
		case err := <-errs:
			switch {
			case err == nil:
				got = append(got, "ok")
			case errors.Is(err, store.ErrSequenceConflict):
				got = append(got, "sequence")
			case errors.Is(err, store.ErrNameConflict):
				got = append(got, "name")
			default:
				t.Fatalf("a write of b: %v", err)
			}
		case <-time.After(settle):
			t.Fatalf("b's writes did not end: %v so far", got)
		}
	}
	if strings.Count(strings.Join(got, " "), "ok") != 1 || !strings.Contains(strings.Join(got, " "), "sequence") || !strings.Contains(strings.Join(got, " "), "name") {
		t.Fatalf("b's three writes: %v; want one stale version, one name taken, one retried and written", got)
	}
	if s := getService(a, "s1"); s.GetSpec().GetAnnotations().GetLabels()["by"] != "a" {
		t.Fatalf("s1 after the stale write: %v", s.GetSpec().GetAnnotations().GetLabels())
	}
	if modRevision(t, e, "/berth/objects/service/s3") != 0 {
		t.Fatal("the refused create of s3 is in etcd")
	}
	if got := modRevision(t, e, "/berth/batch"); got <= afterA || modRevision(t, e, "/berth/objects/service/s4") != got {
		t.Fatalf("the last write is at %d (a's at %d), s4 at %d: want exactly s4's write after a's", got, afterA, modRevision(t, e, "/berth/objects/service/s4"))
	}
	awaitService(t, a, "s4", uint64(modRevision(t, e, "/berth/objects/service/s4")))
}

// TestConcurrentWritersAllLand: many writers on two managers at once:
// each write lands once, and both views agree on every version.
func TestConcurrentWritersAllLand(t *testing.T) {
	e := startEtcd(t)
	a, b := open(t, e, "/berth"), open(t, e, "/berth")
	run(t, a)
	run(t, b)
	ctx := t.Context()
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		m := a
		if i%2 == 1 {
			m = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- create(ctx, m, service(fmt.Sprintf("s%d", i), fmt.Sprintf("svc%d", i)))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		id := fmt.Sprintf("s%d", i)
		rev := uint64(modRevision(t, e, "/berth/objects/service/"+id))
		awaitService(t, a, id, rev)
		awaitService(t, b, id, rev)
	}
}

// TestRestartLoadsTheState: a manager opened later starts from the
// prefix's state, versions included.
func TestRestartLoadsTheState(t *testing.T) {
	e := startEtcd(t)
	a := open(t, e, "/berth")
	run(t, a)
	for i := range 3 {
		if err := create(t.Context(), a, service(fmt.Sprintf("s%d", i), fmt.Sprintf("svc%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	c := open(t, e, "/berth")
	if c.Store().Index() != a.Store().Index() {
		t.Fatalf("index %d after load, the writer's %d", c.Store().Index(), a.Store().Index())
	}
	for i := range 3 {
		id := fmt.Sprintf("s%d", i)
		if got, want := getService(c, id), getService(a, id); !proto.Equal(got, want) {
			t.Fatalf("%s loaded as %v, written as %v", id, got, want)
		}
	}
}

// TestCompactionRestartsTheWatch: a manager whose watch needs revisions
// etcd compacted loads a fresh snapshot (its store's watchers start over,
// as after a Raft snapshot) and follows on from there.
func TestCompactionRestartsTheWatch(t *testing.T) {
	e := startEtcd(t)
	a, b := open(t, e, "/berth"), open(t, e, "/berth") // b watches from now
	run(t, a)
	w, err := b.Store().Watch(t.Context(), b.Store().Index())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 3 {
		if err := create(t.Context(), a, service(fmt.Sprintf("s%d", i), fmt.Sprintf("svc%d", i))); err != nil {
			t.Fatal(err)
		}
	}
	cli := e.dial()
	defer cli.Close()
	if _, err := cli.Compact(t.Context(), modRevision(t, e, "/berth/batch")); err != nil {
		t.Fatal(err)
	}
	run(t, b)
	for i := range 3 {
		id := fmt.Sprintf("s%d", i)
		awaitService(t, b, id, getService(a, id).GetMeta().GetVersion())
	}
	await.True(t, settle, func() bool {
		select {
		case _, open := <-w.Events():
			return !open && errors.Is(w.Err(), store.ErrRestored)
		default:
			return false
		}
	}, "the watcher from before the compaction ends with ErrRestored")
	if err := create(t.Context(), a, service("after", "after")); err != nil {
		t.Fatal(err)
	}
	awaitService(t, b, "after", getService(a, "after").GetMeta().GetVersion())
}

// TestPrefixIsChecked: a prefix holding other keys, or not a key path,
// is refused at start with what to do.
func TestPrefixIsChecked(t *testing.T) {
	e := startEtcd(t)
	cli := e.dial()
	defer cli.Close()
	if _, err := cli.Put(t.Context(), "/other/thing", "x"); err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string]string{
		"/other":  "etcd prefix /other holds 1 keys that are not berth's",
		"berth":   `--etcd-prefix "berth": want a key path`,
		"/berth/": `--etcd-prefix "/berth/": want a key path`,
	} {
		_, err := Open(t.Context(), Config{Client: cli, Prefix: prefix})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("prefix %q: %v, want %q", prefix, err, want)
		}
	}
	if _, err := Open(t.Context(), Config{Client: cli, Prefix: "/mine"}); err != nil {
		t.Fatalf("an empty prefix: %v", err)
	}
}

// TestUnreachableEtcdAndBack: with etcd down a write fails saying so, and
// once it is back the manager writes and follows again.
func TestUnreachableEtcdAndBack(t *testing.T) {
	e := startEtcd(t)
	a, b := open(t, e, "/berth"), open(t, e, "/berth")
	run(t, a)
	run(t, b)
	e.stop()
	ctx, cancel := context.WithTimeout(t.Context(), settle)
	defer cancel()
	err := create(ctx, a, service("s1", "web"))
	if err == nil || !strings.Contains(err.Error(), "etcd unreachable at "+e.endpoint()) || !errors.Is(err, store.ErrOutcomeUnknown) {
		t.Fatalf("a write with etcd down: %v", err)
	}
	await.True(t, settle, func() bool { return !b.Reachable() }, "the idle manager notices etcd is gone")
	e.start()
	await.NoError(t, settle, func() error { return create(t.Context(), a, service("s2", "db")) }, "a write once etcd is back")
	awaitService(t, b, "s2", getService(a, "s2").GetMeta().GetVersion())
	if !b.Reachable() {
		t.Fatal("b still says etcd is unreachable")
	}
}
