package initproc

import (
	"fmt"
	"strconv"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// Mounts into the rootfs are made on descriptors opened inside it (see
// inroot.go), never on a path joined from strings: the kernel resolves a
// path again at mount(2), after a container sharing a volume may have
// swapped one of its directories for a symlink to the host (runc's
// CVE-2021-30465).

// fdPath names the file behind descriptor fd for calls that take a path;
// the kernel follows it to that very file, whatever its path is now.
func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// mountInRoot mounts a filesystem (proc, tmpfs, ...) on the directory
// target, resolved and created inside root.
func mountInRoot(root int, target, fstype string, flags uintptr, data string) error {
	fd, err := mkdirInRoot(root, target)
	if err != nil {
		return fmt.Errorf("create mount target %s in rootfs: %w", target, initconf.DiskError(err))
	}
	defer unix.Close(fd)
	if err := unix.Mount(fstype, fdPath(fd), fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// bindPathInRoot binds the path source of the init's own mount namespace
// (recursively) on target, as bindInRoot.
func bindPathInRoot(root int, source, target string, readonly bool) error {
	tree, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("bind source %s: %w", source, err)
	}
	defer unix.Close(tree)
	return bindInRoot(root, tree, source, target, readonly)
}

// bindInRoot attaches tree, a recursive clone of the host path source, on
// target, resolved and created inside root as a directory or a file to
// match the source. A read-only bind is made read-only, submounts
// included, before it is attached, so there is no moment at which it is
// writable.
func bindInRoot(root, tree int, source, target string, readonly bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(tree, &st); err != nil {
		return fmt.Errorf("bind source %s: %w", source, err)
	}
	dst, err := createInRoot(root, target, st.Mode&unix.S_IFMT == unix.S_IFDIR, 0)
	if err != nil {
		return fmt.Errorf("create mount target %s in rootfs: %w", target, initconf.DiskError(err))
	}
	defer unix.Close(dst)
	if readonly {
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("make bind of %s read-only: %w", source, err)
		}
	}
	if err := unix.MoveMount(tree, "", dst, "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("bind %s on %s: %w", source, target, err)
	}
	return nil
}
