package testhost

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named network namespaces, so `ip netns
// list` shows ours.
const netnsDir = "/run/netns"

// shareNetnsDir makes netnsDir a shared mount point, as iproute2 does, so a
// namespace unmounted here also disappears from mount namespaces created
// while it existed (containers a test starts would otherwise pin it).
func shareNetnsDir() error {
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("make %s: %w", netnsDir, err)
	}
	err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("make %s shared: %w", netnsDir, err)
	}
	// EINVAL: not a mount point yet. Bind it onto itself and try again.
	if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s: %w", netnsDir, err)
	}
	if err := unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make %s shared: %w", netnsDir, err)
	}
	return nil
}

// createNetns makes a new network namespace and bind-mounts it at
// /run/netns/<name>.
func createNetns(name string) (path string, err error) {
	path = filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() { errc <- unshareAndMount(path) }()
	if err := <-errc; err != nil {
		os.Remove(path)
		return "", fmt.Errorf("create netns %s: %w", name, err)
	}
	return path, nil
}

// unshareAndMount moves a locked OS thread into a new network namespace,
// bind-mounts that namespace at path and moves the thread back. Should the
// way back fail, the thread stays locked and the runtime discards it when
// the goroutine ends. Threads are not discarded otherwise: a child started
// with Pdeathsig from a thread that later exits would be killed with it.
func unshareAndMount(path string) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("open own netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("unshare: %w", err)
	}
	src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
	if err := netns.Set(orig); err != nil {
		return errors.Join(mountErr, fmt.Errorf("return to own netns: %w", err))
	}
	runtime.UnlockOSThread()
	if mountErr != nil {
		return fmt.Errorf("bind %s: %w", src, mountErr)
	}
	return nil
}

// netnsNames lists the named namespaces that belong to some run.
func netnsNames() ([]string, error) {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", netnsDir, err)
	}
	var names []string
	for _, e := range ents {
		if runOf(e.Name()) != "" {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// deleteNetns kills the processes left inside the named namespace and
// removes its mount. A missing namespace is not an error.
func deleteNetns(name string) error {
	path := filepath.Join(netnsDir, name)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	if err := killInNetns(path); err != nil {
		errs = append(errs, err)
	}
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		errs = append(errs, fmt.Errorf("unmount netns %s: %w", name, err))
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove netns %s: %w", name, err))
	}
	return errors.Join(errs...)
}

// killInNetns sends SIGKILL to every process whose network namespace is the
// one mounted at path. Only the harness puts processes there.
func killInNetns(path string) error {
	want, err := nsID(path)
	if err != nil {
		return err
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		got, err := nsID(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil || got != want {
			continue // gone, a zombie, or elsewhere
		}
		if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("kill pid %d in %s: %w", pid, path, err)
		}
	}
	return nil
}

// nsID returns the device and inode that identify a namespace file.
func nsID(path string) ([2]uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return [2]uint64{}, fmt.Errorf("stat %s: %w", path, err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return [2]uint64{st.Dev, st.Ino}, nil
}

// InNetns runs fn on a thread inside the network namespace at path, for
// tests: a socket fn opens stays in that namespace. The thread stays
// locked and dies with its goroutine, never back in the pool.
func InNetns(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}
