package initproc

import (
	"errors"
	"fmt"
	"path"

	"golang.org/x/sys/unix"
)

// Paths a container controls (mount targets, working directories) are
// resolved by the kernel inside a root directory descriptor, never by
// joining strings: openat2 with RESOLVE_IN_ROOT treats every symlink,
// absolute or "../..", as if the root were "/", and RESOLVE_NO_MAGICLINKS
// refuses /proc/*/fd/N and the like, which lead anywhere. The result is a
// descriptor; whatever is done next (mount, chdir) is done to it, so the
// path cannot be swapped in between (runc's CVE-2021-30465).

// maxLinkDepth bounds the symlinks followed while creating a path.
const maxLinkDepth = 40

// openInRoot opens p (taken as absolute inside root) with flags, O_CLOEXEC
// added. The kernel returns EAGAIN when a rename raced the lookup; it is
// retried.
func openInRoot(root int, p string, flags uint64) (int, error) {
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	for i := 0; ; i++ {
		fd, err := unix.Openat2(root, p, &how)
		if errors.Is(err, unix.EAGAIN) && i < 100 {
			continue
		}
		if errors.Is(err, unix.ENOSYS) {
			return -1, fmt.Errorf("openat2 (Linux 5.6 or later is needed): %w", err)
		}
		return fd, err
	}
}

// mkdirInRoot opens the directory p inside root as an O_PATH descriptor,
// creating what is missing (mode 0755) the way `mkdir -p` would inside
// the root. A dangling symlink is followed, inside the root.
func mkdirInRoot(root int, p string) (int, error) {
	return createInRoot(root, p, true, 0)
}

// createInRoot opens p inside root as an O_PATH descriptor, creating it
// (a directory, or an empty file when dir is false) and its missing
// parents.
func createInRoot(root int, p string, dir bool, depth int) (int, error) {
	p = path.Clean("/" + p)
	fd, err := openInRoot(root, p, unix.O_PATH)
	if err == nil || !errors.Is(err, unix.ENOENT) || p == "/" {
		return fd, err
	}
	if depth > maxLinkDepth {
		return -1, fmt.Errorf("%s: %w", p, unix.ELOOP)
	}
	parentPath, name := path.Split(p)
	parent, err := createInRoot(root, parentPath, true, depth+1)
	if err != nil {
		return -1, err
	}
	defer unix.Close(parent)
	if dir {
		err = unix.Mkdirat(parent, name, 0o755)
	} else {
		var f int
		f, err = unix.Openat(parent, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			unix.Close(f)
		}
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	fd, err = openInRoot(root, p, unix.O_PATH)
	if !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	// name exists yet p does not resolve: a dangling symlink. Create
	// where it points, inside the root.
	buf := make([]byte, unix.PathMax)
	n, lerr := unix.Readlinkat(parent, name, buf)
	if lerr != nil {
		return -1, err
	}
	dest := string(buf[:n])
	if !path.IsAbs(dest) {
		dest = path.Join(parentPath, dest)
	}
	return createInRoot(root, dest, dir, depth+1)
}
