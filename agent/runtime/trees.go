package runtime

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The init attaches the rootfs and every bind and volume source from
// mount trees the agent clones (open_tree) in its own mount namespace at
// the start, rather than from paths looked up in the init's namespace.
// That namespace is a copy of the agent's as it was when the init
// started, and a spare init (spare.go) may have started long before: it
// lacks every mount made since, such as the overlay rootfs the image
// store mounted for this very container, and would find the bare
// directories under them.

// maxMounts bounds a spec's mounts: each bind sends a descriptor with the
// config, and a message carries at most 253 (SCM_MAX_FD).
const maxMounts = 200

// openTrees clones the rootfs and the source of every bind and volume
// mount in ms, recursively, in the order the init takes them.
func openTrees(rootfs string, ms []Mount) ([]*os.File, error) {
	var out []*os.File
	add := func(path, what string) error {
		fd, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
		if err != nil {
			return fmt.Errorf("%s %s: %w", what, path, err)
		}
		out = append(out, os.NewFile(uintptr(fd), path))
		return nil
	}
	if err := add(rootfs, "rootfs"); err != nil {
		return nil, err
	}
	for _, m := range ms {
		if m.Type == MountTmpfs {
			continue
		}
		if err := add(m.Source, "bind source"); err != nil {
			closeAll(out)
			return nil, err
		}
	}
	return out, nil
}
