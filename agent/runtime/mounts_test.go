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
	if m := mountsUnder(e.dir); len(m) > 0 {
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

func TestSymlinkedMountTargetStaysInRootfs(t *testing.T) {
	e := newEnv(t)
	outside := filepath.Join(e.dir, "outside")
	must(t, os.MkdirAll(outside, 0o755))
	must(t, os.Symlink(outside, filepath.Join(e.rootfs, "escape")))
	s := e.spec("escape", "true")
	s.Mounts = []Mount{{Type: MountTmpfs, Target: "/escape/x"}}
	e.output(t, s)
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Fatal("mount target followed a symlink out of the rootfs")
	}
}

func TestOutOfDiskIsClearAndClean(t *testing.T) {
	e := newEnv(t)
	small := filepath.Join(e.dir, "small")
	must(t, os.MkdirAll(small, 0o755))
	must(t, unix.Mount("tmpfs", small, "tmpfs", 0, "size=256k"))
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
	if _, err := os.Stat(filepath.Join(small, "containers", "full")); !os.IsNotExist(err) {
		t.Fatalf("half-made container left: %v", err)
	}
	if len(rt.List()) != 0 {
		t.Fatal("failed container still listed")
	}
}
