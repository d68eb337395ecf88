package e2ecluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Agents under test put their containers' cgroups under a parent of the
// test process's own (berth-agent --cgroup-parent), named with its PID,
// so what a test leaves is removed at its end and what a killed test
// process left is swept by the next run, as testhost does with
// namespaces. Without it every test agent shared /berth at the cgroup
// roots, and killed agents left it behind.

// cgroupPrefix starts the name of every test cgroup parent; the PID of
// the process that made it follows (agent/runtime's tests use it too).
const cgroupPrefix = "berth-test-"

// cgroupRoot is where the cgroup filesystems are mounted.
const cgroupRoot = "/sys/fs/cgroup"

// TB is the part of testing.TB that TestCgroupParent uses.
type TB interface {
	Name() string
	Cleanup(func())
	Errorf(format string, args ...any)
}

// TestCgroupParent sweeps the cgroup parents of dead test processes and
// returns one for test t, /berth-test-PID-NAME; t's cleanup removes it in
// every hierarchy, killing whatever is left in it.
func TestCgroupParent(t TB) string {
	SweepCgroups()
	name := strings.Map(func(r rune) rune {
		if r == '/' || r == ' ' {
			return '_'
		}
		return r
	}, t.Name())
	parent := fmt.Sprintf("/%s%d-%s", cgroupPrefix, os.Getpid(), name)
	t.Cleanup(func() {
		if err := RemoveCgroups(parent); err != nil {
			t.Errorf("remove the test's cgroups: %v", err)
		}
	})
	return parent
}

// SweepCgroups removes the test cgroup parents whose process is gone.
func SweepCgroups() {
	for _, h := range hierarchies() {
		groups, _ := filepath.Glob(filepath.Join(h, cgroupPrefix+"*"))
		for _, g := range groups {
			pid, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(filepath.Base(g), cgroupPrefix), "-", 2)[0])
			if err == nil && unix.Kill(pid, 0) == unix.ESRCH {
				removeTree(g)
			}
		}
	}
}

// RemoveCgroups removes the absolute cgroup parent and all below it in
// every hierarchy, killing the processes left there first.
func RemoveCgroups(parent string) error {
	var errs []error
	for _, h := range hierarchies() {
		errs = append(errs, removeTree(filepath.Join(h, parent)))
	}
	return errors.Join(errs...)
}

// CgroupDirs lists the directories at and below the absolute cgroup
// parent, in every hierarchy.
func CgroupDirs(parent string) []string {
	var out []string
	for _, h := range hierarchies() {
		filepath.WalkDir(filepath.Join(h, parent), func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				out = append(out, p)
			}
			return nil
		})
	}
	return out
}

// hierarchies are the cgroup mounts: the root itself on a v2-only host,
// else each v1 hierarchy under it (symlinks such as cpu -> cpu,cpuacct
// left out) and the hybrid v2 one.
func hierarchies() []string {
	var st unix.Statfs_t
	if unix.Statfs(cgroupRoot, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return []string{cgroupRoot}
	}
	ents, _ := os.ReadDir(cgroupRoot)
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, filepath.Join(cgroupRoot, e.Name()))
		}
	}
	return out
}

// removeTree kills the processes in dir's groups and removes them,
// deepest first. A missing dir is not an error.
func removeTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, e := range ents {
		if e.IsDir() {
			errs = append(errs, removeTree(filepath.Join(dir, e.Name())))
		}
	}
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	for _, f := range strings.Fields(string(data)) {
		if pid, err := strconv.Atoi(f); err == nil {
			unix.Kill(pid, unix.SIGKILL) // only test containers live here
		}
	}
	// The kernel lets go of a group a moment after its last task died.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = unix.Rmdir(dir)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return errors.Join(errs...)
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return errors.Join(append(errs, fmt.Errorf("remove cgroup %s: %w", dir, err))...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
