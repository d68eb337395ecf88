package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/cgroups"
)

// TestContainerCannotOpenHostBlockDevice runs a container as root with
// Docker's default capabilities, CAP_MKNOD among them: it may make a node
// for a host block device but not open it, while /dev/null, /dev/zero,
// /dev/urandom and a pty work. It runs on the host's own cgroup layout (v1
// devices cgroup here, the eBPF device program on a v2 host) and, on a
// hybrid host, once more on the unified hierarchy, where only the eBPF
// program stands between the container and the disk.
func TestContainerCannotOpenHostBlockDevice(t *testing.T) {
	e := newEnv(t)
	must(t, os.Symlink("busybox", filepath.Join(e.rootfs, "bin", "mknod")))
	dev := openableBlockDevice(t, e.dir)
	t.Run("v"+strconv.Itoa(e.rt.CgroupVersion()), func(t *testing.T) {
		checkDevices(t, e, e.rt, dev)
	})
	if e.rt.CgroupVersion() == 1 {
		unified := filepath.Join(cgroups.DefaultRoot, "unified")
		if h, err := cgroups.Detect(unified); err == nil && h.Version == cgroups.V2 {
			t.Run("v2-unified", func(t *testing.T) {
				rt, err := New(Config{DataDir: filepath.Join(e.dir, "data-unified"), CgroupParent: e.parent,
					CgroupRoot: unified, InitPath: os.Getenv("BERTH_INIT_PATH")})
				must(t, err)
				if rt.CgroupVersion() != 2 {
					t.Fatalf("runtime on %s uses cgroup v%d", unified, rt.CgroupVersion())
				}
				checkDevices(t, e, rt, dev)
			})
		}
	}
}

func checkDevices(t *testing.T, e *env, rt *Runtime, dev string) {
	maj, min, _ := strings.Cut(dev, ":")
	s := e.spec("devices-v"+strconv.Itoa(rt.CgroupVersion()), "sh", "-c", `
		grep CapEff /proc/self/status
		mknod /dev/hostdisk b `+maj+` `+min+` && echo mknod-ok
		if head -c 1 /dev/hostdisk >/dev/null 2>/dev/shm/err; then echo disk-opened; else echo "disk-denied: $(cat /dev/shm/err)"; fi
		echo x > /dev/null && echo null-ok
		head -c 1 /dev/zero >/dev/null && echo zero-ok
		head -c 1 /dev/urandom >/dev/null && echo urandom-ok
		exec 3<>/dev/ptmx && echo ptmx-ok`)
	c, err := rt.Run(context.Background(), s)
	must(t, err)
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Delete(ctx); err != nil {
			t.Errorf("delete %s: %v", s.ID, err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	must(t, rt.Logs(context.Background(), s.ID, false, &b))
	out := b.String()
	t.Logf("container output:\n%s", out)
	for _, want := range []string{"mknod-ok", "disk-denied: head: /dev/hostdisk: Operation not permitted", "null-ok", "zero-ok", "urandom-ok", "ptmx-ok"} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q", want)
		}
	}
}

// openableBlockDevice returns MAJOR:MINOR of a block device of this host
// that the test itself can open (a disk if it may, else a loop device), so
// that the container's denial is the device filter's doing.
func openableBlockDevice(t *testing.T, dir string) string {
	t.Helper()
	devs, _ := filepath.Glob("/sys/block/*/dev")
	var disks, loops []string
	for _, d := range devs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if strings.HasPrefix(filepath.Base(filepath.Dir(d)), "loop") {
			loops = append(loops, strings.TrimSpace(string(b)))
		} else {
			disks = append(disks, strings.TrimSpace(string(b)))
		}
	}
	node := filepath.Join(dir, "probe-disk")
	defer os.Remove(node)
	for _, dev := range append(disks, loops...) {
		maj, min, _ := strings.Cut(dev, ":")
		a, _ := strconv.Atoi(maj)
		b, _ := strconv.Atoi(min)
		os.Remove(node)
		if err := unix.Mknod(node, unix.S_IFBLK|0o600, int(unix.Mkdev(uint32(a), uint32(b)))); err != nil {
			t.Fatal(err)
		}
		if fd, err := unix.Open(node, unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
			unix.Close(fd)
			return dev
		}
	}
	t.Skip("no block device on this host that the test may open, to show the container may not")
	return ""
}
