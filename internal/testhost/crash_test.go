package testhost

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"berth/internal/await"
)

// crashEnv makes TestCrashChild build a cluster and wait to be killed.
const crashEnv = "BERTH_TESTHOST_CRASH_CHILD"

// TestCrashChild is the victim of TestSweepAfterKilledRun, run in a child
// process. It makes a cluster, starts a process in a host outside the
// harness's tracking (so it outlives this process), prints "RUN <id> <pid>"
// and blocks until killed.
func TestCrashChild(t *testing.T) {
	if os.Getenv(crashEnv) == "" {
		t.Skip("helper process for TestSweepAfterKilledRun")
	}
	c, err := Create(t.Context(), Options{N: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DropBetween(t.Context(), c.Hosts[0], c.Hosts[1]); err != nil {
		t.Fatal(err)
	}
	orphan := c.Hosts[0].Command(t.Context(), "busybox", "sleep", "600")
	orphan.Cancel = func() error { return nil } // outlive the child on purpose
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RUN %s %d\n", c.ID, orphan.Process.Pid)
	io.Copy(io.Discard, os.Stdin) // the parent never closes it; kill -9 ends us
}

func TestSweepAfterKilledRun(t *testing.T) {
	needRoot(t)
	t.Parallel()
	// A live run, which the sweep must leave alone, and a firewall for the
	// killed run to leave an accept rule in.
	live := NewT(t, 1)
	if bridgedFiltered() {
		fakeFirewall(t, "ip", live)
	}

	// Hold the machine-wide lock from the kill to the sweep: any other
	// Create (a parallel test, another package) would sweep the dead run
	// first and leave this test nothing to check.
	id, orphan, unlock := runAndKillChild(t)
	defer unlock()
	tag := Prefix + id
	if out, _ := exec.Command("ip", "netns", "list").Output(); !strings.Contains(string(out), tag+"-h1") {
		t.Fatalf("before the sweep, ip netns list = %q, want the killed run's %s-h1", out, tag)
	}
	if out, _ := exec.Command("nft", "list", "ruleset").Output(); bridgedFiltered() && !strings.Contains(string(out), fmt.Sprintf("comment %q", tag)) {
		t.Fatalf("before the sweep, no accept rule of the killed run in the ruleset:\n%s", out)
	}
	if procGone(orphan) {
		t.Fatalf("process %d in the killed run's host is gone before the sweep; the test proves nothing", orphan)
	}

	if err := sweepLocked(t.Context(), slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	unlock()
	assertGone(t, id)
	await.True(t, wait, func() bool { return procGone(orphan) }, "process %d left in the killed run's host is killed", orphan)
	if _, err := os.Stat(live.Hosts[0].NetnsPath()); err != nil {
		t.Fatalf("the live cluster's namespace: %v", err)
	}
	reachable(t, live.Hosts[0], live.Gateway)
}

// runAndKillChild runs TestCrashChild in a child process, kills it with
// SIGKILL once it has made its cluster, and returns the run id and the PID
// of the process it left in a host. It returns holding the testhost lock.
func runAndKillChild(t *testing.T) (id string, orphan int, unlock func()) {
	t.Helper()
	child := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestCrashChild$")
	child.Env = append(os.Environ(), crashEnv+"=1")
	child.Stderr = os.Stderr
	stdin, err := child.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	id, orphan = readRun(t, stdout)
	unlockOnce, err := lock(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	unlock = func() { once.Do(unlockOnce) }
	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	return id, orphan, unlock
}

// readRun reads the child's "RUN <id> <pid>" line.
func readRun(t *testing.T, r io.Reader) (id string, pid int) {
	t.Helper()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "RUN" {
			pid, err := strconv.Atoi(f[2])
			if err != nil {
				t.Fatalf("child said %q: %v", sc.Text(), err)
			}
			return f[1], pid
		}
	}
	t.Fatalf("child exited without naming its run (read error %v)", sc.Err())
	return "", 0
}

// procGone reports whether pid has exited: no longer in /proc, or a zombie
// nobody has reaped yet.
func procGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && strings.HasPrefix(s[i+1:], " Z")
}
