package runtime

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// A container's runtime state — its record (state.json), the init's exit
// file, the exec socket and init.log — is written on every start and exit
// and means nothing after a reboot, when none of its processes runs any
// more. On a disk file system every create, rename and unlink of it waits
// in the journal behind other processes' fsyncs: under load a start took
// 10 ms with it on ext4 against 7 on a tmpfs, and at times twice as long.
// So it lives on a tmpfs, as runc keeps /run/runc and containerd
// /run/containerd: the runtime mounts one on Config.StateDir unless that
// is on a tmpfs already. The mount outlives the agent, so a restarted
// agent finds and adopts its running containers there; a reboot empties
// it, as it ends the containers. Logs stay on disk under
// DataDir/containers/<id>: they may be big, and are read after a reboot.

// stateDirName is Config.StateDir's default, under DataDir.
const stateDirName = "state"

// HasState reports whether a runtime on dataDir with the default StateDir
// may have containers recorded: its state tmpfs is mounted (or the data
// dir is on a tmpfs), or containers an agent from before it started are
// recorded beside their logs. A reader that only peeks (Runtime.Peek)
// opens no runtime otherwise, since New would mount the tmpfs.
func HasState(dataDir string) bool {
	if _, err := os.Stat(filepath.Join(dataDir, stateDirName, "containers")); err == nil {
		return true
	}
	old, _ := filepath.Glob(filepath.Join(dataDir, "containers", "*", stateFile))
	return len(old) > 0
}

// stateMountOptions bound the tmpfs: records, exit files and init logs
// are a few kilobytes a container.
const stateMountOptions = "mode=0711,size=64m"

// stateDir is a runtime's hold on its state dir: a shared lock on a file
// beside it, which every runtime on the dir keeps while it is open. The
// lock keeps two runtimes starting at once (berth-agent run and ps, say)
// from mounting twice, the second hiding the first's state, and lets the
// last one out unmount the tmpfs when no container is left on it.
type stateDir struct {
	dir  string
	lock *os.File
}

// openStateDir makes sure dir is on a tmpfs, mounting one there if not,
// and creates its containers directory.
func openStateDir(dir string) (*stateDir, error) {
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, fmt.Errorf("create state dir: %w", diskError(err))
	}
	lock, err := os.OpenFile(dir+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock state dir: %w", diskError(err))
	}
	if err := mountState(lock, dir); err != nil {
		lock.Close()
		return nil, err
	}
	return &stateDir{dir: dir, lock: lock}, nil
}

// mountState leaves a shared lock held on a state dir that is on a tmpfs.
// Runtimes hold the shared lock only once the tmpfs is there and unmount
// it only under the exclusive one, so a runtime that finds none takes the
// exclusive lock (waiting out another's mount or unmount), looks again
// and mounts.
func mountState(lock *os.File, dir string) error {
	if err := flock(lock, unix.LOCK_SH); err != nil {
		return fmt.Errorf("lock state dir: %w", err)
	}
	tmpfs, err := onTmpfs(dir)
	if err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if !tmpfs {
		if err := flock(lock, unix.LOCK_EX); err != nil {
			return fmt.Errorf("lock state dir: %w", err)
		}
		if tmpfs, err = onTmpfs(dir); err != nil {
			return fmt.Errorf("state dir: %w", err)
		}
	}
	if !tmpfs {
		if err := unix.Mount("berth-state", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, stateMountOptions); err != nil {
			return fmt.Errorf("mount a tmpfs on state dir %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(dir, "containers"), 0o711); err != nil {
		return fmt.Errorf("create state dir: %w", diskError(err))
	}
	return flock(lock, unix.LOCK_SH)
}

// close lets go of the state dir. The last runtime out unmounts a tmpfs
// that it or another mounted when it holds no container any more, so that
// an agent stopped with nothing running leaves no mount behind; one with
// containers leaves it for the next agent to adopt them from.
func (s *stateDir) close() error {
	defer s.lock.Close()
	if flock(s.lock, unix.LOCK_EX|unix.LOCK_NB) != nil {
		return nil // another runtime has it open
	}
	entries, err := os.ReadDir(filepath.Join(s.dir, "containers"))
	if err != nil || len(entries) > 0 {
		return err
	}
	if mounted, err := isMountPoint(s.dir); err != nil || !mounted {
		return err
	}
	// Detached: nothing uses it any more, and a lazy unmount spares the
	// wait for an RCU grace period (0.1 ms against 0.4).
	if err := unix.Unmount(s.dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount state dir %s: %w", s.dir, err)
	}
	return nil
}

// isMountPoint reports whether dir is on another file system than its
// parent.
func isMountPoint(dir string) (bool, error) {
	var st, parent unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, err
	}
	if err := unix.Stat(filepath.Dir(dir), &parent); err != nil {
		return false, err
	}
	return st.Dev != parent.Dev, nil
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// onTmpfs reports whether dir is on a tmpfs.
func onTmpfs(dir string) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return false, err
	}
	return st.Type == unix.TMPFS_MAGIC, nil
}

// adoptLogDirs looks at the log directories of containers that have no
// state on the tmpfs. One with a record of its own is a container an
// agent from before this layout started, with its state beside its logs
// (and its init writing there): it is adopted with that directory as its
// state directory, so that an upgrade leaves no container unmanaged. The
// others ended with a reboot, which emptied the tmpfs, and are removed.
// A container is created state first and deleted logs first, so no live
// container's logs are ever without its state.
func (r *Runtime) adoptLogDirs() ([]*Container, error) {
	entries, err := os.ReadDir(filepath.Join(r.cfg.DataDir, "containers"))
	if err != nil {
		return nil, fmt.Errorf("list container logs: %w", err)
	}
	var out []*Container
	var errs []error
	for _, e := range entries {
		id, logs := e.Name(), r.logDir(e.Name())
		if _, err := r.Get(id); err == nil {
			continue
		}
		if _, err := os.Lstat(r.containerDir(id)); !errors.Is(err, os.ErrNotExist) {
			continue
		}
		if rec, err := loadRecord(logs); err == nil {
			c := newContainer(r, rec)
			c.dir = logs
			out = append(out, r.adoptRecord(c))
			continue
		}
		r.log.Info("removing logs of a container lost in a reboot", "container", id)
		errs = append(errs, os.RemoveAll(logs))
	}
	return out, errors.Join(errs...)
}
