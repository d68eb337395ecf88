package cgroups

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/await"
)

// The tests in this file need a host whose /sys/fs/cgroup is cgroup v2
// only, as on current Debian, Ubuntu, Fedora and RHEL. Elsewhere they
// skip; `make test-cgroup2` runs them in such a VM.

// v2Group creates a group under a parent named for this test process at
// the root of a v2-only hierarchy, and removes both when the test ends.
func v2Group(t *testing.T) *Group {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	h, err := Detect(DefaultRoot)
	if err != nil || h.Version != V2 {
		t.Skipf("%s is not cgroup v2 only (a v1 or hybrid host); make test-cgroup2 runs this in a v2 VM", DefaultRoot)
	}
	parent := "/berth-test-" + strconv.Itoa(os.Getpid())
	g, err := h.Create(parent, strings.ReplaceAll(t.Name(), "/", "-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := errors.Join(g.Kill(), g.Remove()); err != nil {
			t.Error(err)
		}
		os.Remove(filepath.Join(DefaultRoot, parent)) // the last test's cleanup removes it
	})
	return g
}

// startIn starts busybox sh -c script directly inside the group at path
// (CLONE_INTO_CGROUP): a group's payload, where a container's processes
// live, or the group itself.
func startIn(t *testing.T, path, script string) *exec.Cmd {
	t.Helper()
	dir, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	cmd := exec.Command("/bin/busybox", "sh", "-c", script)
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func readFile(t *testing.T, dir, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(data))
}

func TestV2LimitsAreWritten(t *testing.T) {
	g := v2Group(t)
	r := Resources{MemoryBytes: 32 << 20, CPUQuota: 25000, CPUPeriod: 100000, CPUShares: 512, PidsLimit: 7}
	if err := g.Set(r); err != nil {
		t.Fatal(err)
	}
	d := g.Paths[""]
	for file, want := range map[string]string{
		"memory.max":      "33554432",
		"memory.swap.max": "0",
		"cpu.max":         "25000 100000",
		"cpu.weight":      strconv.FormatUint(SharesToWeight(512), 10),
	} {
		if got := readFile(t, d, file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if got := readFile(t, g.Payload, "pids.max"); got != "7" {
		t.Errorf("payload pids.max = %q, want 7", got)
	}
	on := strings.Fields(readFile(t, filepath.Dir(d), "cgroup.subtree_control"))
	for _, c := range []string{"memory", "cpu", "pids"} {
		if !contains(on, c) {
			t.Errorf("controller %s not enabled for the group: parent's subtree_control %v", c, on)
		}
	}
	if on := strings.Fields(readFile(t, d, "cgroup.subtree_control")); !contains(on, "pids") {
		t.Errorf("pids not enabled for the payload: the group's subtree_control %v", on)
	}
}

func TestV2MemoryLimitOOMKillsAndIsCounted(t *testing.T) {
	g := v2Group(t)
	if err := g.Set(Resources{MemoryBytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	// tail holds its whole input, 64 MiB with no newline. Should the limit
	// not hold, it finishes instead of taking all the machine's memory.
	sh := startIn(t, g.Payload, "head -c 67108864 /dev/zero | tail >/dev/null")
	sh.Wait()
	if code := sh.ProcessState.ExitCode(); code != 128+int(syscall.SIGKILL) {
		t.Fatalf("tail of 64 MiB under a 16 MiB limit exited %d, want 137 (killed by the OOM killer)", code)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMKills == 0 || st.MemoryLimitBytes != 16<<20 || st.MemoryPeakBytes < 8<<20 {
		t.Fatalf("stats after the OOM kill: %+v, want OOMKills > 0, the 16 MiB limit and a peak near it", st)
	}
}

func TestV2PidsLimitIsEnforcedAndReported(t *testing.T) {
	g := v2Group(t)
	if err := g.Set(Resources{PidsLimit: 4}); err != nil {
		t.Fatal(err)
	}
	// The shell and three sleeps fill the group; the fourth fork fails,
	// and the shell exits on it.
	errs := filepath.Join(t.TempDir(), "stderr")
	sh := startIn(t, g.Payload, `exec 2>`+errs+`; for i in 1 2 3 4 5; do sleep 1000 & done; echo all-forked >&2`)
	sh.Wait()
	if b, _ := os.ReadFile(errs); !strings.Contains(string(b), "can't fork") || strings.Contains(string(b), "all-forked") {
		t.Fatalf("forks beyond pids.max did not fail: %q", b)
	}
	st, err := g.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Pids != 3 || st.PidsLimit != 4 {
		t.Fatalf("stats: %d of %d pids, want the 3 sleeps of 4", st.Pids, st.PidsLimit)
	}
}

func TestV2CPUQuotaThrottles(t *testing.T) {
	g := v2Group(t)
	if err := g.Set(Resources{CPUQuota: 5000, CPUPeriod: 100000}); err != nil {
		t.Fatal(err)
	}
	startIn(t, g.Payload, "while :; do :; done")
	// Throttling happens only when a quota is enforced: a busy loop under
	// 5% of a CPU is throttled in nearly every period.
	await.True(t, 30*time.Second, func() bool {
		s, err := readKeyed(g.Paths[""], "cpu.stat")
		return err == nil && s["nr_throttled"] >= 3
	}, "a busy loop under cpu.max 5000 100000 is throttled (cpu.stat nr_throttled)")
	st, err := g.Stats()
	if err != nil || st.CPUUsage == 0 {
		t.Fatalf("cpu usage from cpu.stat: %v, %v", st.CPUUsage, err)
	}
}

// forkBomb fills g with processes that keep forking, up to its pids limit.
func forkBomb(t *testing.T, g *Group) {
	t.Helper()
	if err := g.Set(Resources{PidsLimit: 100}); err != nil {
		t.Fatal(err)
	}
	startIn(t, g.Payload, `bomb() { while :; do sleep 1000 & bomb & done; }; bomb`)
	await.True(t, 20*time.Second, func() bool {
		p, _ := g.Pids()
		return len(p) >= 50
	}, "the fork bomb filled the group")
}

func TestV2KillEmptiesAForkingGroup(t *testing.T) {
	g := v2Group(t)
	forkBomb(t, g)
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if p, err := g.Pids(); err != nil || len(p) != 0 {
		t.Fatalf("after Kill: pids %v, %v", p, err)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
}

// TestV2KillByFreezing covers kernels without cgroup.kill (before 5.14):
// the group is frozen while its processes are killed.
func TestV2KillByFreezing(t *testing.T) {
	g := v2Group(t)
	forkBomb(t, g)
	if err := g.killFrozen(); err != nil {
		t.Fatal(err)
	}
	if p, err := g.Pids(); err != nil || len(p) != 0 {
		t.Fatalf("after killFrozen: pids %v, %v", p, err)
	}
	if got := readFile(t, g.Paths[""], "cgroup.freeze"); got != "0" {
		t.Fatalf("group left frozen: cgroup.freeze = %s", got)
	}
	if err := g.Remove(); err != nil {
		t.Fatal(err)
	}
}

// TestV2KillReachesThePayload: Kill empties the group and its payload
// subgroup, where a container's processes live.
func TestV2KillReachesThePayload(t *testing.T) {
	g := v2Group(t)
	startIn(t, g.Paths[""], "sleep 1000")
	startIn(t, g.Payload, "sleep 1000")
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
	if p, err := g.Pids(); err != nil || len(p) != 0 {
		t.Fatalf("after Kill the group still holds %v (%v)", p, err)
	}
	if n := readFile(t, g.Payload, "cgroup.threads"); n != "" {
		t.Fatalf("after Kill the payload still holds threads %q", n)
	}
}
