package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// TestConcurrentPrepares: many containers of one image start at once (a
// service scaled up); each gets its own working rootfs, none waits on the
// others' disk syncs, and a missing layer link is repaired once.
func TestConcurrentPrepares(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	reg.push(t, "app:v1", tarLayer(t, file("hello", "world")), tarLayer(t, file("second", "layer")))
	s := newStore(t, testRoot(t), nil)
	img, err := s.Pull(ctxT(t), reg.Host+"/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	// Lose the layer links, as after a crash mid-GC: every Prepare below
	// finds them missing at once.
	links, _ := filepath.Glob(s.path("l", "*"))
	for _, l := range links {
		os.Remove(l)
	}
	const n = 24
	var wg sync.WaitGroup
	roots := make([]string, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			roots[i], errs[i] = s.Prepare(ctxT(t), fmt.Sprintf("c%d", i), img)
		})
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Prepare c%d: %v", i, errs[i])
		}
		if b, err := os.ReadFile(filepath.Join(roots[i], "second")); err != nil || string(b) != "layer" {
			t.Fatalf("rootfs of c%d: second = %q, %v", i, b, err)
		}
		if err := os.WriteFile(filepath.Join(roots[i], "mine"), []byte(fmt.Sprint(i)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		if b, _ := os.ReadFile(filepath.Join(roots[i], "mine")); string(b) != fmt.Sprint(i) {
			t.Errorf("c%d sees another container's write: %q", i, b)
		}
	}
	for i := range n {
		wg.Go(func() { errs[i] = s.Remove(ctxT(t), fmt.Sprintf("c%d", i)) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Errorf("Remove c%d: %v", i, errs[i])
		}
	}
	if m := mountsUnder(t, s.root); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
}
