package initproc

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// maskedPaths are hidden as Docker hides them: files under /dev/null,
// directories under an empty read-only tmpfs.
var maskedPaths = []string{
	"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// readonlyPaths are remounted read-only as Docker does.
var readonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// device is a node created in the container's /dev.
type device struct {
	name         string
	major, minor uint32
}

var defaultDeviceNodes = []device{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// setupRootfs builds the container's filesystem tree under the rootfs and
// pivots into it. It runs in the init, inside the new mount namespace.
// Every mount target is resolved inside the rootfs and mounted on by
// descriptor (mountfd.go): neither an image's symlinks nor a volume that
// another container changes meanwhile can send a mount to the host.
//
// The rootfs and the bind sources come as mount trees the agent cloned at
// the start (tree and binds, closed here): this namespace may be older
// than their mounts. The rootfs's is attached over its own path.
func setupRootfs(cfg *initconf.Config, tree int, binds []int) error {
	defer closeFds(append(binds, tree))
	root := cfg.Rootfs
	if err := unix.Mount("", "/", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, root, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach rootfs %s: %w", root, err)
	}
	rootfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs %s: %w", root, err)
	}
	defer unix.Close(rootfd)
	if err := mountSpecial(rootfd, cfg); err != nil {
		return err
	}
	if err := makeDevices(rootfd, cfg.UserNS); err != nil {
		return err
	}
	for _, m := range cfg.Mounts {
		tree := -1
		if !m.Tmpfs {
			tree, binds = binds[0], binds[1:]
		}
		if err := mountUser(rootfd, m, tree); err != nil {
			return err
		}
	}
	if err := pivotRoot(rootfd); err != nil {
		return err
	}
	return lockDown(cfg.ReadonlyRootfs)
}

// mountSpecial mounts /proc, /dev, /dev/pts, /dev/shm, /dev/mqueue and /sys.
func mountSpecial(root int, cfg *initconf.Config) error {
	const common = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	sysFlags := uintptr(common | unix.MS_RDONLY)
	mounts := []struct {
		target, fstype string
		flags          uintptr
		data           string
	}{
		{"/proc", "proc", common, ""},
		{"/dev", "tmpfs", unix.MS_NOSUID | unix.MS_STRICTATIME, "mode=755,size=65536k"},
		{"/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"},
		{"/dev/shm", "tmpfs", common, "mode=1777,size=65536k"},
		{"/dev/mqueue", "mqueue", common, ""},
		{"/sys", "sysfs", sysFlags, ""},
	}
	if !cfg.UserNS {
		mounts[2].data += ",gid=5"
	}
	for _, m := range mounts {
		if m.fstype == "sysfs" && cfg.UserNS && cfg.HostNetwork {
			// sysfs needs a network namespace owned by our user namespace.
			if err := bindPathInRoot(root, "/sys", m.target, true); err != nil {
				return err
			}
			continue
		}
		if err := mountInRoot(root, m.target, m.fstype, m.flags, m.data); err != nil {
			return err
		}
	}
	return nil
}

// makeDevices creates the usual nodes and links in the container's /dev,
// the tmpfs mountSpecial placed, through a descriptor of it. In a user
// namespace mknod is not allowed, so the host's nodes are bound.
func makeDevices(root int, userNS bool) error {
	dev, err := openInRoot(root, "/dev", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return fmt.Errorf("open /dev in rootfs: %w", err)
	}
	defer unix.Close(dev)
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range defaultDeviceNodes {
		if userNS {
			if err := bindDevice(dev, d.name); err != nil {
				return err
			}
			continue
		}
		if err := unix.Mknodat(dev, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", d.name, err)
		}
	}
	links := [][2]string{
		{"pts/ptmx", "ptmx"}, {"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"}, {"/proc/kcore", "core"},
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return fmt.Errorf("link /dev/%s: %w", l[1], err)
		}
	}
	return nil
}

// bindDevice binds the host's /dev/name on a new empty file in dev.
func bindDevice(dev int, name string) error {
	fd, err := unix.Openat(dev, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return fmt.Errorf("create /dev/%s: %w", name, err)
	}
	defer unix.Close(fd)
	if err := unix.Mount("/dev/"+name, fdPath(fd), "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind /dev/%s: %w", name, err)
	}
	return nil
}

// mountUser places one bind, volume or tmpfs mount; a bind or volume
// comes as its source's mount tree.
func mountUser(root int, m initconf.Mount, tree int) error {
	if !m.Tmpfs {
		return bindInRoot(root, tree, m.Source, m.Target, m.ReadOnly)
	}
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if m.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	return mountInRoot(root, m.Target, "tmpfs", flags, strings.Join(m.Options, ","))
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// pivotRoot makes root the new / and detaches the old root, as runc does
// (pivot_root(".", ".") needs no directory for the old root).
func pivotRoot(root int) error {
	oldRoot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldRoot)
	if err := unix.Fchdir(root); err != nil {
		return fmt.Errorf("chdir rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Fchdir(oldRoot); err != nil {
		return fmt.Errorf("chdir old root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root slave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	return unix.Chdir("/")
}

// lockDown masks and write-protects /proc and /sys paths and, when asked,
// makes the rootfs read-only. It runs after pivot_root.
func lockDown(readonlyRootfs bool) error {
	for _, p := range maskedPaths {
		if err := mask(p); err != nil {
			return err
		}
	}
	for _, p := range readonlyPaths {
		if err := bindReadonly(p, p); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
	}
	if readonlyRootfs {
		if err := remountReadonly("/"); err != nil {
			return fmt.Errorf("read-only rootfs: %w", err)
		}
	}
	return nil
}

func mask(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return nil // nothing to hide
	}
	if fi.IsDir() {
		err = unix.Mount("tmpfs", p, "tmpfs", unix.MS_RDONLY, "size=0")
	} else {
		err = unix.Mount("/dev/null", p, "", unix.MS_BIND, "")
	}
	if err != nil {
		return fmt.Errorf("mask %s: %w", p, err)
	}
	return nil
}

func bindReadonly(src, dst string) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind %s read-only: %w", dst, err)
	}
	return remountReadonly(dst)
}

// remountReadonly makes the mount at p read-only, keeping the flags the
// kernel locks (nosuid, nodev, noexec) so that it also works in a user
// namespace.
func remountReadonly(p string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", p, err)
	}
	keep := uintptr(st.Flags) & (unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC)
	if err := unix.Mount("", p, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|keep, ""); err != nil {
		return fmt.Errorf("remount %s read-only: %w", p, err)
	}
	return nil
}
