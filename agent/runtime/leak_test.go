package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
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

// TestNoLeaksAfter200Cycles starts and stops 200 containers (20 with
// -short, $BERTH_LEAK_CYCLES when set: the emulated cgroup v2 VM runs 50)
// and checks that mounts, cgroups, descriptors, goroutines and state files
// are back where they were.
func TestNoLeaksAfter200Cycles(t *testing.T) {
	cycles := 200
	if testing.Short() {
		cycles = 20
	}
	if n, err := strconv.Atoi(os.Getenv("BERTH_LEAK_CYCLES")); err == nil && n > 0 {
		cycles = n
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
	await.NoError(t, 10*time.Second, func() error {
		after = countResources(t, e)
		if after.mounts <= before.mounts && after.cgroups <= before.cgroups &&
			after.fds <= before.fds && after.goroutines <= before.goroutines+2 && after.files <= before.files {
			return nil
		}
		return fmt.Errorf("now %+v, before %+v", after, before)
	}, "after %d start/stop cycles nothing leaks", cycles)
	t.Logf("after %d cycles: %+v (before %+v)", cycles, after, before)
}
