package image

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// TestStartupSweepSparesAnotherStoresWork: two stores on one root, as a
// node's agent and a `berth-agent run` share a data dir. Each New sweeps
// half-made snapshots and half-unpacked layers, which a crash leaves; it
// must not take the ones another live store is making right now.
func TestStartupSweepSparesAnotherStoresWork(t *testing.T) {
	needRoot(t)
	reg := newRegistry(t)
	const pulls = 11
	for i := range pulls {
		reg.push(t, fmt.Sprintf("app:v%d", i), tarLayer(t, file("n", fmt.Sprint(i)), file("pad", string(make([]byte, 64<<10)))))
	}
	root := testRoot(t)
	a := newStore(t, root, nil)
	img, err := a.Pull(ctxT(t), reg.Host+"/app:v0", nil)
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var opened atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() { // the other process: starts, sweeps, exits, again
		for !stop.Load() {
			b, err := New(Config{Root: root, Logger: testLogger(t)})
			if err != nil {
				t.Errorf("second store: %v", err)
				return
			}
			b.Close()
			opened.Add(1)
		}
	})
	defer wg.Wait()
	defer stop.Store(true)
	for i := range 40 {
		key := fmt.Sprintf("c%d", i)
		rootfs, err := a.Prepare(ctxT(t), key, img)
		if err != nil {
			t.Fatalf("Prepare %s while another store opens on the same root: %v", key, err)
		}
		if b, err := os.ReadFile(filepath.Join(rootfs, "n")); err != nil || string(b) != "0" {
			t.Fatalf("rootfs of %s: n = %q, %v; want the image's file", key, b, err)
		}
		if i%4 == 0 {
			if _, err := a.Pull(ctxT(t), fmt.Sprintf("%s/app:v%d", reg.Host, 1+i/4), nil); err != nil {
				t.Fatalf("Pull while another store opens on the same root: %v", err)
			}
		}
		if err := a.Remove(ctxT(t), key); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("the second store opened %d times meanwhile", opened.Load())
}
