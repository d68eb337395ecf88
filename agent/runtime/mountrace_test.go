package runtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMountTargetSwapStaysInRootfs replays runc's CVE-2021-30465: a
// container that shares a volume with another one swaps a directory of a
// mount target for a symlink to a host path while the runtime places the
// mount. A runtime that resolves the target once and then mounts by path
// follows the symlink on the host. Here the swap is made deterministic: the
// target is a FIFO, which blocks a runtime that opens it to create it; the
// test swaps while it waits, then lets it go on. A runtime that mounts on a
// descriptor never blocks and never re-resolves.
func TestMountTargetSwapStaysInRootfs(t *testing.T) {
	e := newEnv(t)
	vol := filepath.Join(e.dir, "vol")
	must(t, os.MkdirAll(filepath.Join(vol, "a"), 0o755))
	must(t, unix.Mkfifo(filepath.Join(vol, "a", "target"), 0o644))
	src := filepath.Join(e.dir, "src")
	must(t, os.WriteFile(src, []byte("mounted-file"), 0o644))
	// A host path that, followed on the host, lands in the rootfs where
	// the container can see it; followed inside the root, it leads nowhere.
	hostDir := filepath.Join(e.rootfs, "escaped")
	must(t, os.MkdirAll(hostDir, 0o755))
	must(t, os.WriteFile(filepath.Join(hostDir, "target"), []byte("untouched"), 0o644))

	// Regular files only: the FIFO, where the mount is missing, would block.
	s := e.spec("swap", "sh", "-c", "cat /escaped/target; echo; for f in /vol/a/target /vol/a.real/target; do [ -f $f ] && cat $f; done; echo")
	s.Mounts = []Mount{
		{Type: MountBind, Source: vol, Target: "/vol"},
		{Type: MountBind, Source: src, Target: "/vol/a/target"},
	}
	stop := make(chan struct{})
	swapped := make(chan bool, 1)
	go func() { swapped <- swapWhenBlocked(stop, "swap", vol, hostDir) }()
	c, err := e.rt.Run(context.Background(), s)
	close(stop)
	didSwap := <-swapped
	if err != nil {
		t.Fatalf("run (swap made: %v): %v", didSwap, err)
	}
	e.wait(t, c)
	out := e.logs(t, "swap")
	lines := strings.Split(out, "\n")
	if lines[0] != "untouched" {
		t.Fatalf("the bind mount followed a swapped symlink to a host path (swap made: %v): /escaped/target shows %q:\n%s", didSwap, lines[0], out)
	}
	if !strings.Contains(out, "mounted-file") {
		t.Fatalf("the bind mount is not at its target inside the rootfs (swap made: %v):\n%s", didSwap, out)
	}
}

// swapWhenBlocked waits until the init of container id sleeps in the open
// of a FIFO, then replaces vol/a with a symlink to hostDir and opens the
// FIFO for writing, which wakes the init. It reports whether it swapped.
func swapWhenBlocked(stop <-chan struct{}, id, vol, hostDir string) bool {
	want := []byte("berth-init\x00" + id + "\x00")
	for {
		select {
		case <-stop:
			return false
		case <-time.After(time.Millisecond):
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if cmd, _ := os.ReadFile(p); !bytes.Equal(cmd, want) {
				continue
			}
			wchan, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "wchan"))
			if string(wchan) != "wait_for_partner" {
				continue
			}
			if os.Rename(filepath.Join(vol, "a"), filepath.Join(vol, "a.real")) != nil ||
				os.Symlink(hostDir, filepath.Join(vol, "a")) != nil {
				return false
			}
			fd, err := unix.Open(filepath.Join(vol, "a.real", "target"), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			if err == nil {
				unix.Close(fd)
			}
			return true
		}
	}
}
