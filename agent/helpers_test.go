package agent

import (
	"bufio"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/image"
	"berth/agent/runtime"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// testPrefix names the temp dirs and cgroups these tests make, with the
// test process's PID, so a later run sweeps what a crashed one left.
const testPrefix = "berth-test-agent-"

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers (namespaces, mounts, cgroups)")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
}

// testDir makes a data dir and registers the cleanup of everything an
// agent made in it: containers (stopped), snapshots, mounts, cgroups.
func testDir(t *testing.T) string {
	t.Helper()
	sweepLeftovers(func(pid int) bool { return unix.Kill(pid, 0) == unix.ESRCH })
	dir, err := os.MkdirTemp("", testPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cleanupDir(t, dir) })
	return dir
}

func cgroupParent() string { return "/" + testPrefix + strconv.Itoa(os.Getpid()) }

// cleanupDir deletes the containers and snapshots under an agent's data
// dir, unmounts what is left and removes it.
func cleanupDir(t *testing.T, dir string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if rt, err := runtime.New(runtime.Config{DataDir: filepath.Join(dir, "runtime"), CgroupParent: cgroupParent()}); err == nil {
		rt.Adopt(ctx)
		for _, c := range rt.List() {
			if err := c.Delete(ctx); err != nil {
				t.Errorf("cleanup: delete container %s: %v", c.ID(), err)
			}
		}
	}
	if st, err := image.New(image.Config{Root: filepath.Join(dir, "images")}); err == nil {
		snaps, _ := st.Snapshots(ctx)
		for _, s := range snaps {
			st.Remove(ctx, s.Key)
		}
		st.Close()
	}
	unmountUnder(dir)
	if err := os.RemoveAll(dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	removeCgroups(func(pid int) bool { return pid == os.Getpid() })
}

// unmountUnder detaches every mount below dir, deepest first.
func unmountUnder(dir string) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], dir+"/") {
			points = append(points, fields[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		unix.Unmount(p, unix.MNT_DETACH)
	}
}

// sweepLeftovers removes temp dirs and cgroups of test processes that match.
func sweepLeftovers(match func(pid int) bool) {
	tmps, _ := filepath.Glob(filepath.Join(os.TempDir(), testPrefix+"*"))
	for _, d := range tmps {
		if pidMatches(filepath.Base(d), match) {
			unmountUnder(d)
			os.RemoveAll(d)
		}
	}
	removeCgroups(match)
}

func pidMatches(name string, match func(int) bool) bool {
	rest := strings.TrimPrefix(name, testPrefix)
	pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
	return err == nil && match(pid)
}

func removeCgroups(match func(int) bool) {
	groups, _ := filepath.Glob("/sys/fs/cgroup/*/" + testPrefix + "*")
	v2, _ := filepath.Glob("/sys/fs/cgroup/" + testPrefix + "*") // a v2-only host
	groups = append(groups, v2...)
	for _, g := range groups {
		if pidMatches(filepath.Base(g), match) {
			removeCgroupTree(g)
		}
	}
}

func removeCgroupTree(dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(dir, e.Name()))
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			unix.Kill(p, unix.SIGKILL) // only our test containers live here
		}
	}
	for i := 0; i < 50 && unix.Rmdir(dir) == unix.EBUSY; i++ {
		time.Sleep(20 * time.Millisecond)
	}
}

// running is an Agent whose Run goroutine the test stops.
type running struct {
	*Agent
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	err    error
}

// startAgent runs an agent on dir until the test ends or stop is called.
func startAgent(t *testing.T, dir string, join []string, token string) *running {
	t.Helper()
	return startAgentLogging(t, dir, join, token, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
}

// startAgentLogging is startAgent with the agent's logger.
func startAgentLogging(t *testing.T, dir string, join []string, token string, log *slog.Logger) *running {
	t.Helper()
	a, err := New(Config{DataDir: dir, Join: join, Token: token, CgroupParent: cgroupParent(), Hostname: "test-node", Labels: map[string]string{"zone": "a"}, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Agent: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(r.stop)
	return r
}

// stop ends Run (containers keep running) and waits for it.
func (r *running) stop() {
	r.cancel()
	r.wait()
}

// wait waits for Run to return and returns its error.
func (r *running) wait() error {
	r.once.Do(func() { r.err = <-r.done })
	return r.err
}

// waitReported waits until the cluster's last status of task id has state want.
func waitReported(t *testing.T, c *fakeCluster, id string, want pb.TaskState) *pb.TaskStatus {
	t.Helper()
	await.True(t, 30*time.Second, func() bool { return c.latest(id).GetState() == want },
		"task %s: want %s reported; got %v", id, want, reportList{c, id})
	return c.latest(id)
}

type reportList struct {
	c  *fakeCluster
	id string
}

func (r reportList) String() string {
	var out []string
	for _, s := range r.c.reported(r.id) {
		out = append(out, s.GetState().String()+"("+s.GetMessage()+"|"+s.GetErr()+")")
	}
	return strings.Join(out, " ")
}

func alive(pid int64) bool { return pid > 0 && unix.Kill(int(pid), 0) == nil }

// testLogger logs warnings and worse to stderr.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
