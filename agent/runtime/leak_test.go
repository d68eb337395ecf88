package runtime

import (
	"context"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// resources counts what a container could leave behind in this process
// and on the host: mounts below the test's dir, cgroups under the test's parent, open file
// descriptors, goroutines, and files in the runtime's data dir.
type resources struct {
	mounts, cgroups, fds, goroutines, files int
}

func countResources(t *testing.T, e *env) resources {
	t.Helper()
	var r resources
	// Mounts anywhere below the test's dir: root filesystems, namespace
	// bind mounts. (Other test packages mount elsewhere at the same time.)
	r.mounts = len(mountsUnder(e.dir))
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		if strings.Contains(p, e.parent) {
			r.cgroups++
		}
		// Only the controllers' top levels and our own subtree matter.
		if strings.Count(p, "/") > 6 && !strings.Contains(p, e.parent) {
			return filepath.SkipDir
		}
		return nil
	})
	fds, err := os.ReadDir("/proc/self/fd")
	must(t, err)
	r.fds = len(fds)
	r.goroutines = goruntime.NumGoroutine()
	filepath.WalkDir(filepath.Join(e.dir, "data"), func(string, os.DirEntry, error) error { r.files++; return nil })
	return r
}

// TestNoLeaksAfter200Cycles starts and stops 200 containers and checks
// that mounts, cgroups, descriptors, goroutines and state files are back
// where they were.
func TestNoLeaksAfter200Cycles(t *testing.T) {
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	e := newEnv(t)
	ctx := context.Background()
	cycle := func(i int) {
		c := e.run(t, e.spec("cycle-"+strconv.Itoa(i), "sleep", "60"))
		if _, err := c.Stop(ctx, 5*time.Second); err != nil {
			t.Fatalf("cycle %d: stop: %v", i, err)
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatalf("cycle %d: delete: %v", i, err)
		}
	}
	cycle(-1) // warm up lazily created state (the parent cgroup, pools)
	before := countResources(t, e)
	for i := range cycles {
		cycle(i)
	}
	// Goroutines and descriptors are released asynchronously after a
	// container's exit is collected; wait for them rather than sleep.
	var after resources
	ok := func() bool {
		after = countResources(t, e)
		return after.mounts <= before.mounts && after.cgroups <= before.cgroups &&
			after.fds <= before.fds && after.goroutines <= before.goroutines+2 && after.files <= before.files
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("after %d start/stop cycles: %+v; before: %+v", cycles, after, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("after %d cycles: %+v (before %+v)", cycles, after, before)
}
