package runtime

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
)

// TestPidsLimitIsExact: --pids-limit 50 allows 50 processes of the
// container, not 50 plus the init's threads.
func TestPidsLimitIsExact(t *testing.T) {
	e := newEnv(t)
	// sh and 49 sleeps make 50; the loop forks nothing else ([ and $(( ))
	// are builtins). The 51st process must fail to start.
	s := e.spec("pids50", "sh", "-c", `i=0; while [ $i -lt 49 ]; do sleep 1000 & i=$((i+1)); done
echo fifty-running; sleep 1000 & echo fifty-one-running`)
	s.Resources.PidsLimit = 50
	st := e.wait(t, e.run(t, s))
	out := e.logs(t, "pids50")
	if !strings.Contains(out, "fifty-running") {
		t.Fatalf("50 processes could not start under --pids-limit 50: exit %d: %q", st.Code, out)
	}
	if strings.Contains(out, "fifty-one-running") || !strings.Contains(out, "can't fork") {
		t.Fatalf("a 51st process started under --pids-limit 50: exit %d: %q", st.Code, out)
	}
}

// TestCgroupNamespace: a container sees its own cgroup as the root of a
// private cgroup namespace, not the host's hierarchy.
func TestCgroupNamespace(t *testing.T) {
	e := newEnv(t)
	check := func(t *testing.T, out string) {
		t.Helper()
		lines := strings.Fields(out)
		if len(lines) == 0 {
			t.Fatal("no /proc/self/cgroup")
		}
		for _, l := range lines {
			if !strings.HasSuffix(l, ":/") {
				t.Errorf("/proc/self/cgroup inside the container: %q, want every hierarchy at its root (\"0::/\" on v2):\n%s", l, out)
			}
		}
	}
	t.Run("host hierarchy", func(t *testing.T) {
		check(t, e.output(t, e.spec("cgns", "cat", "/proc/self/cgroup")))
	})
	t.Run("v2 hierarchy", func(t *testing.T) {
		root := "/sys/fs/cgroup"
		if e.rt.CgroupVersion() == 1 {
			root = "/sys/fs/cgroup/unified" // a hybrid host's v2 mount, without controllers
		}
		rt, err := New(Config{DataDir: filepath.Join(e.dir, "data-v2"), CgroupParent: e.parent, CgroupRoot: root})
		if err != nil || rt.CgroupVersion() != 2 {
			t.Skipf("no cgroup v2 hierarchy at %s: %v", root, err)
		}
		e2 := &env{rt: rt, dir: e.dir, rootfs: e.rootfs, parent: e.parent}
		t.Cleanup(func() { e2.cleanup(t) })
		out := e2.output(t, e2.spec("cgns-v2", "cat", "/proc/self/cgroup"))
		if !strings.Contains("\n"+out, "\n0::/\n") {
			t.Errorf("/proc/self/cgroup on v2: %q, want \"0::/\"", out)
		}
		// From the host: the container's process is in the threaded
		// payload group; of the init's threads only the one that forks.
		c := e2.run(t, e2.spec("cgns-v2b", "sleep", "1000"))
		child := firstChild(t, c.Pid())
		if got := v2Cgroup(t, strconv.Itoa(child)); !strings.HasSuffix(got, "/cgns-v2b/payload") {
			t.Errorf("container process in %q, want the payload group", got)
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", c.Pid()))
		inPayload := 0
		for _, task := range tasks {
			if strings.HasSuffix(v2Cgroup(t, strings.TrimPrefix(task, "/proc/")), "/payload") {
				inPayload++
			}
		}
		if inPayload != 1 || len(tasks) < 2 {
			t.Errorf("%d of the init's %d threads in the payload group, want 1", inPayload, len(tasks))
		}
		_ = os.Remove(filepath.Join(root, e.parent))
	})
}

// firstChild returns a child process of pid, waiting for one to appear.
func firstChild(t *testing.T, pid int) int {
	t.Helper()
	var child int
	await.True(t, 5*time.Second, func() bool {
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
		for _, f := range tasks {
			data, _ := os.ReadFile(f)
			if fs := strings.Fields(string(data)); len(fs) > 0 {
				child, _ = strconv.Atoi(fs[0])
				return true
			}
		}
		return false
	}, "no child of %d", pid)
	return child
}

// v2Cgroup returns the host's v2 ("0::") cgroup path of proc, a PID or
// "PID/task/TID".
func v2Cgroup(t *testing.T, proc string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + proc + "/cgroup")
	must(t, err)
	for _, l := range strings.Split(string(data), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			return p
		}
	}
	return ""
}
