package runtime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestBindVolumeTmpfsMounts(t *testing.T) {
	e := newEnv(t)
	host := filepath.Join(e.dir, "hostdir")
	must(t, os.MkdirAll(host, 0o755))
	must(t, os.WriteFile(filepath.Join(host, "in.txt"), []byte("from-host"), 0o644))
	ro := filepath.Join(e.dir, "rofile")
	must(t, os.WriteFile(ro, []byte("ro-data"), 0o644))
	mounts := []Mount{
		{Type: MountBind, Source: host, Target: "/data"},
		{Type: MountBind, Source: ro, Target: "/etc/ro.conf", ReadOnly: true},
		{Type: MountVolume, Source: "vol1", Target: "/var/lib/v"},
		{Type: MountTmpfs, Target: "/scratch", Options: []string{"size=1m"}},
	}
	s := e.spec("mounts", "sh", "-c", `cat /data/in.txt; echo; echo out > /data/out.txt; cat /etc/ro.conf; echo;
		(echo x > /etc/ro.conf) 2>/dev/null || echo ro-ok; cat /var/lib/v/count 2>/dev/null; echo first > /var/lib/v/count;
		grep ' /scratch ' /proc/mounts | cut -d' ' -f3`)
	s.Mounts = mounts
	out := e.output(t, s)
	if out != "from-host\nro-data\nro-ok\ntmpfs\n" {
		t.Fatalf("output: %q", out)
	}
	if data, _ := os.ReadFile(filepath.Join(host, "out.txt")); string(data) != "out\n" {
		t.Fatalf("bind mount write not visible on host: %q", data)
	}
	// The named volume outlives the container.
	s2 := e.spec("mounts2", "cat", "/var/lib/v/count")
	s2.Mounts = mounts[2:3]
	if out := e.output(t, s2); out != "first\n" {
		t.Fatalf("volume content in second container: %q", out)
	}
	if m := e.leakedMounts(); len(m) > 0 {
		t.Fatalf("mounts leaked into the host namespace: %v", m)
	}
}

func TestReadonlyRootfs(t *testing.T) {
	e := newEnv(t)
	s := e.spec("ro", "sh", "-c", `(touch /newfile) 2>/dev/null || echo rootfs-ro; touch /dev/shm/ok && echo shm-rw; touch /tmp/t && echo tmp-rw`)
	s.ReadonlyRootfs = true
	s.Mounts = []Mount{{Type: MountTmpfs, Target: "/tmp"}}
	if out := e.output(t, s); out != "rootfs-ro\nshm-rw\ntmp-rw\n" {
		t.Fatalf("output: %q", out)
	}
}

// TestSymlinkedMountTargetStaysInRootfs: an image whose mount targets
// are symlinks to host paths, absolute or climbing with "../..", gets its
// mounts inside its rootfs, where the symlinks lead when "/" is the
// rootfs, and nothing is created or mounted on the host paths.
func TestSymlinkedMountTargetStaysInRootfs(t *testing.T) {
	e := newEnv(t)
	abs, rel := filepath.Join(e.dir, "host-abs"), filepath.Join(e.dir, "host-rel")
	must(t, os.MkdirAll(abs, 0o755))
	must(t, os.MkdirAll(rel, 0o755))
	must(t, os.Symlink(abs, filepath.Join(e.rootfs, "abs")))
	must(t, os.Symlink(strings.Repeat("../", 12)+strings.TrimPrefix(rel, "/"), filepath.Join(e.rootfs, "etc", "rel")))
	src := filepath.Join(e.dir, "src")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "in.txt"), []byte("bound"), 0o644))
	s := e.spec("escape", "sh", "-c", "touch /abs/t/x /abs/v/y && cat /etc/rel/b/in.txt /etc/rel/f")
	s.Mounts = []Mount{
		{Type: MountTmpfs, Target: "/abs/t"},
		{Type: MountVolume, Source: "symvol", Target: "/abs/v"},
		{Type: MountBind, Source: src, Target: "/etc/rel/b"},
		{Type: MountBind, Source: filepath.Join(src, "in.txt"), Target: "/etc/rel/f", ReadOnly: true},
	}
	if out := e.output(t, s); out != "boundbound" {
		t.Fatalf("output %q, want the bind mounts' content", out)
	}
	for _, d := range []string{abs, rel} {
		if entries, _ := os.ReadDir(d); len(entries) > 0 {
			t.Errorf("a mount target followed a symlink out of the rootfs: host dir %s has %v", d, entries)
		}
	}
	if _, err := os.Stat(filepath.Join(e.rootfs, abs, "t", "x")); err == nil {
		t.Error("tmpfs not mounted at /abs/t: its file is in the rootfs")
	}
	if _, err := os.Stat(filepath.Join(e.rt.VolumeDir("symvol"), "y")); err != nil {
		t.Errorf("volume not mounted where /abs/v leads inside the rootfs: %v", err)
	}
}

// TestDevSymlinkStaysInRootfs: an image whose /dev is a symlink to a host
// directory gets its device nodes inside its rootfs, not on the host.
func TestDevSymlinkStaysInRootfs(t *testing.T) {
	e := newEnv(t)
	hostDev := filepath.Join(e.dir, "host-dev")
	must(t, os.MkdirAll(hostDev, 0o755))
	must(t, os.Remove(filepath.Join(e.rootfs, "dev")))
	must(t, os.Symlink(hostDev, filepath.Join(e.rootfs, "dev")))
	c, err := e.rt.Run(context.Background(), e.spec("devlink", "sh", "-c", "echo x > /dev/null"))
	if entries, _ := os.ReadDir(hostDev); len(entries) > 0 {
		t.Fatalf("device nodes made on the host through the image's /dev symlink: %s has %v", hostDev, entries)
	}
	if err != nil {
		t.Fatal(err)
	}
	if st := e.wait(t, c); st.Code != 0 {
		t.Fatalf("exit %d: %s", st.Code, e.logs(t, "devlink"))
	}
}

func TestOutOfDiskIsClearAndClean(t *testing.T) {
	e := newEnv(t)
	small := filepath.Join(e.dir, "small")
	must(t, os.MkdirAll(small, 0o755))
	must(t, unix.Mount("tmpfs", small, "tmpfs", 0, "size=4m")) // room for the init; the filler takes the rest
	t.Cleanup(func() { unix.Unmount(small, unix.MNT_DETACH) })
	rt, err := New(Config{DataDir: small, CgroupParent: e.parent})
	must(t, err)
	f, _ := os.Create(filepath.Join(small, "filler"))
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	_, err = rt.Run(context.Background(), e.spec("full", "echo", "hi"))
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "out of disk space") {
		t.Fatalf("run on a full disk: %v, want ErrNoSpace", err)
	}
	for _, d := range []string{rt.containerDir("full"), rt.logDir("full")} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Fatalf("half-made container left %s: %v", d, err)
		}
	}
	if len(rt.List()) != 0 {
		t.Fatal("failed container still listed")
	}
}
