package image

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Several processes may share one store root: a node's agent and any
// `berth-agent run` on the same data dir. Each New sweeps what a crash
// left half-made (snapshots without a record, layers under tmp/), and
// must tell those from the ones another live process is making right
// now. A process holds an flock on locks/<name> for as long as it makes
// such a directory; the sweep takes only directories whose lock it can
// get without waiting. The kernel drops an flock when its holder dies, so
// a crash's leftovers are swept at the next start.

// lockDir holds the work locks, under the store root.
const lockDir = "locks"

// workLock takes the lock of the work called name (a snapshot key or a
// tmp/ directory's name), waiting for another process's hold to end when
// wait is set. ok is false when !wait and the lock is held elsewhere.
// release removes the lock file while still holding the lock, so no file
// is left behind per piece of work.
func (s *Store) workLock(name string, wait bool) (release func(), ok bool, err error) {
	path := s.path(lockDir, name)
	how := unix.LOCK_EX
	if !wait {
		how |= unix.LOCK_NB
	}
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
		err = flock(f, how)
		if errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, false, nil
		}
		if err != nil {
			f.Close()
			return nil, false, fmt.Errorf("lock %s: %w", path, err)
		}
		// The holder before us may have removed the file on release: our
		// lock is then on an inode nobody else will open. Start over.
		if sameInode(f, path) {
			return func() { os.Remove(path); f.Close() }, true, nil
		}
		f.Close()
	}
}

func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

// sameInode reports whether path still names the open file f.
func sameInode(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// snapLock and tmpLock name the locks of a snapshot and of a tmp/ entry.
func snapLock(key string) string { return "snap-" + key }
func tmpLock(name string) string { return "tmp-" + filepath.Base(name) }
