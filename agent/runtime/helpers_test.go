package runtime

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initproc"
)

// testPrefix names everything tests create, so a later run can sweep
// what a crashed one left.
const testPrefix = "berth-test-"

var busyboxApplets = []string{
	"sh", "sleep", "cat", "echo", "ls", "true", "false", "id", "hostname", "ps", "head",
	"tail", "tr", "grep", "touch", "mkdir", "seq", "wc", "kill", "env", "pwd", "dd", "rm", "stat", "tty", "stty",
}

func TestMain(m *testing.M) {
	if initproc.IsInit() { // built without the dedicated init
		initproc.Main()
	}
	if os.Geteuid() == 0 {
		sweep(func(pid int) bool { return unix.Kill(pid, 0) == unix.ESRCH })
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		sweep(func(pid int) bool { return pid == os.Getpid() })
	}
	os.Exit(code)
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: namespaces, mounts and cgroups")
	}
	if _, err := os.Stat("/bin/busybox"); err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
}

// makeRootfs builds a busybox rootfs directory in dir.
func makeRootfs(t testing.TB, dir string) string {
	t.Helper()
	root := filepath.Join(dir, "rootfs")
	for _, d := range []string{"bin", "etc", "proc", "dev", "sys", "tmp", "root"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(filepath.Join(root, "tmp"), 0o1777)
	data, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd":  "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
		"etc/group":   "root:x:0:\ntty:x:5:\napp:x:1000:\nextra:x:2000:app\nnogroup:x:65534:\n",
		"etc/notexec": "#!/bin/sh\necho no\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// env is a runtime on a fresh data dir with a busybox rootfs.
type env struct {
	rt     *Runtime
	dir    string
	rootfs string
	parent string
}

func newEnv(t testing.TB) *env {
	t.Helper()
	needRoot(t)
	dir, err := os.MkdirTemp("", testPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		t.Fatal(err)
	}
	e := &env{dir: dir, rootfs: makeRootfs(t, dir), parent: testPrefix + strconv.Itoa(os.Getpid())}
	e.rt = e.newRuntime(t)
	t.Cleanup(func() { e.cleanup(t) })
	return e
}

func (e *env) newRuntime(t testing.TB) *Runtime {
	t.Helper()
	// BERTH_INIT_PATH measures with another init binary, e.g. bin/berth-agent.
	// A spare init, as the agent keeps one.
	rt, err := New(Config{DataDir: filepath.Join(e.dir, "data"), CgroupParent: e.parent, InitPath: os.Getenv("BERTH_INIT_PATH"), SpareInit: true})
	if err != nil {
		t.Fatal(err)
	}
	return rt
}

func (e *env) cleanup(t testing.TB) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, c := range e.rt.List() {
		if err := c.Delete(ctx); err != nil {
			t.Errorf("cleanup: delete %s: %v", c.ID(), err)
		}
	}
	e.rt.Close()
	unmountUnder(e.dir) // the state tmpfs, when a test left containers or runtimes
	if err := os.RemoveAll(e.dir); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}

func (e *env) spec(id string, args ...string) Spec {
	return Spec{ID: id, Rootfs: e.rootfs, Args: args, StopGrace: 5 * time.Second}
}

func (e *env) run(t testing.TB, s Spec) *Container {
	t.Helper()
	c, err := e.rt.Run(context.Background(), s)
	if err != nil {
		t.Fatalf("run %v: %v", s.Args, err)
	}
	return c
}

func (e *env) wait(t testing.TB, c *Container) ExitStatus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func (e *env) logs(t testing.TB, id string) string {
	t.Helper()
	var b bytes.Buffer
	if err := e.rt.Logs(context.Background(), id, false, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// output runs args to completion and returns its log.
func (e *env) output(t testing.TB, s Spec) string {
	t.Helper()
	c := e.run(t, s)
	st := e.wait(t, c)
	out := e.logs(t, s.ID)
	if st.Code != 0 {
		t.Fatalf("%v exited %d (%s): %s", s.Args, st.Code, st.Reason, out)
	}
	return out
}

// sweep removes cgroups and temp dirs named for a test process that
// match: crashed runs at start, our own at the end.
func sweep(match func(pid int) bool) {
	dead := func(name string) bool {
		rest := strings.TrimPrefix(name, testPrefix)
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		return err == nil && match(pid)
	}
	tmps, _ := filepath.Glob(filepath.Join(os.TempDir(), testPrefix+"*"))
	for _, d := range tmps {
		if dead(filepath.Base(d)) {
			unmountUnder(d)
			os.RemoveAll(d)
		}
	}
	// Every hierarchy, not only ours: runc (the benchmarks' peer) also
	// makes groups in cpuset, freezer and systemd. "" is a v2-only host's
	// hierarchy, "unified" a hybrid host's.
	hierarchies := []string{""}
	if ents, err := os.ReadDir("/sys/fs/cgroup"); err == nil {
		for _, e := range ents {
			if e.IsDir() {
				hierarchies = append(hierarchies, e.Name())
			}
		}
	}
	for _, c := range hierarchies {
		own := "/"
		data, _ := os.ReadFile("/proc/self/cgroup")
		for _, l := range strings.Split(string(data), "\n") {
			if p := strings.SplitN(l, ":", 3); len(p) == 3 && (p[1] == c || p[1] == "name="+c || (c == "unified" && p[1] == "")) {
				own = p[2]
			}
		}
		for _, base := range []string{filepath.Join("/sys/fs/cgroup", c, own), filepath.Join("/sys/fs/cgroup", c)} {
			groups, _ := filepath.Glob(filepath.Join(base, testPrefix+"*"))
			for _, g := range groups {
				if dead(filepath.Base(g)) {
					removeCgroupTree(g)
				}
			}
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
			unix.Kill(p, unix.SIGKILL)
		}
	}
	for i := 0; i < 50 && unix.Rmdir(dir) == unix.EBUSY; i++ {
		time.Sleep(10 * time.Millisecond)
	}
}

func unmountUnder(dir string) {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	lines := strings.Split(string(data), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if f := strings.Fields(lines[i]); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			unix.Unmount(f[4], unix.MNT_DETACH)
		}
	}
}

// mountsUnder lists mount points below dir in the test's mount namespace.
func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

// leakedMounts lists the mounts under e's dir but the runtime's own state
// tmpfs.
func (e *env) leakedMounts() []string {
	var out []string
	for _, m := range mountsUnder(e.dir) {
		if m != e.rt.cfg.StateDir {
			out = append(out, m)
		}
	}
	return out
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var _ = fmt.Sprint
