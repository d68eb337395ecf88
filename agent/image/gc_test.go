package image

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for GC's notion of "recent".
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

func TestGCRemovesOnlyUnusedLayers(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	base := tarLayer(t, file("base", "shared"))
	reg.push(t, "a:v1", base, tarLayer(t, file("a", "only in a")))
	reg.push(t, "b:v1", base, tarLayer(t, file("b", strings.Repeat("b", 1000))))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: t0}
	s := newStore(t, testRoot(t), func(c *Config) { c.Clock = clock.Now })
	a, err := s.Pull(ctxT(t), reg.Host+"/a:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	var statuses []string
	b, err := s.Pull(ctxT(t), reg.Host+"/b:v1", func(p Progress) {
		if p.Done {
			statuses = append(statuses, fmt.Sprintf("%d:%s", p.LayerIndex, p.Status))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(statuses, "0:"+StatusAlreadyExists) || !slices.Contains(statuses, "1:"+StatusDone) {
		t.Errorf("final statuses of b's layers = %v, want the shared base already there", statuses)
	}
	if len(dirEntries(t, s.path("layers"))) != 3 {
		t.Fatalf("layers = %v, want 3 (one shared)", dirEntries(t, s.path("layers")))
	}
	if _, err := s.Prepare(ctxT(t), "c1", a); err != nil {
		t.Fatal(err)
	}

	clock.Set(t0.Add(30 * time.Minute))
	if freed, err := s.GC(ctxT(t), time.Hour); err != nil || freed != 0 {
		t.Fatalf("GC of recent images freed %d, %v", freed, err)
	}

	clock.Set(t0.Add(2 * time.Hour))
	freed, err := s.GC(ctxT(t), time.Hour)
	if err != nil || freed != 1000 {
		t.Fatalf("GC freed %d, %v; want 1000 (b's own layer)", freed, err)
	}
	if _, err := s.Lookup(reg.Host + "/b:v1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b still recorded after GC: %v", err)
	}
	if _, err := os.Stat(s.layerDir(hexOf(b.Layers[1]))); !os.IsNotExist(err) {
		t.Errorf("b's layer kept: %v", err)
	}
	for _, l := range a.Layers {
		if _, err := os.Stat(s.layerDir(hexOf(l))); err != nil {
			t.Errorf("layer %s of a, in use by c1, removed: %v", l, err)
		}
	}

	if err := s.Remove(ctxT(t), "c1"); err != nil {
		t.Fatal(err)
	}
	if freed, err := s.GC(ctxT(t), time.Hour); err != nil || freed != int64(len("shared")+len("only in a")) {
		t.Fatalf("GC after Remove freed %d, %v", freed, err)
	}
	for _, d := range []string{"layers", "l", "tmp"} {
		if ents := dirEntries(t, s.path(d)); len(ents) > 0 {
			t.Errorf("%s/ = %v after everything was collected", d, ents)
		}
	}
	// A collected image pulls again.
	if _, err := s.Pull(ctxT(t), reg.Host+"/a:v1", nil); err != nil {
		t.Fatalf("pull after GC: %v", err)
	}
}
