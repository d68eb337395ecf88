package runtime

import (
	"os"
	"path/filepath"
	"testing"
)

func TestUserNamespace(t *testing.T) {
	e := newEnv(t)
	// Container root is host uid 100000: it must be able to reach the init
	// binary (in the data dir, or a copy of the test binary in a build
	// without the dedicated init) and the rootfs, and own the paths it
	// writes.
	must(t, os.Chmod(e.dir, 0o711))
	if embeddedInitBinary() == nil && os.Getenv("BERTH_INIT_PATH") == "" {
		self, err := os.Executable()
		must(t, err)
		data, err := os.ReadFile(self)
		must(t, err)
		initBin := filepath.Join(e.dir, "berth-init-bin")
		must(t, os.WriteFile(initBin, data, 0o755))
		rt, err := New(Config{DataDir: filepath.Join(e.dir, "data"), CgroupParent: e.parent, InitPath: initBin})
		must(t, err)
		e.rt = rt
	}
	for _, d := range []string{"tmp", "dev", "proc", "sys"} {
		must(t, os.Chown(filepath.Join(e.rootfs, d), 100000, 100000))
	}
	s := e.spec("userns", "sh", "-c", `id -u; cat /proc/self/uid_map | tr -s ' '; echo hi > /tmp/x && echo tmp-ok; grep CapEff /proc/self/status`)
	s.UserNS = true
	out := e.output(t, s)
	if out != "0\n 0 100000 65536\ntmp-ok\nCapEff:\t00000000a80425fb\n" {
		t.Fatalf("output: %q", out)
	}

	// Mounts by descriptor work from inside a user namespace too: a
	// read-only bind, a tmpfs, and the host's /sys bound for host networking.
	host := filepath.Join(e.dir, "hostdir")
	must(t, os.MkdirAll(host, 0o755))
	must(t, os.WriteFile(filepath.Join(host, "f"), []byte("from-host"), 0o644))
	for _, d := range []string{"data", "scratch"} {
		must(t, os.Mkdir(filepath.Join(e.rootfs, d), 0o755))
	}
	s = e.spec("userns-mounts", "sh", "-c", `cat /data/f; echo; (echo x > /data/f) 2>/dev/null || echo ro-ok; touch /scratch/x && echo tmpfs-ok; ls /sys/class >/dev/null && echo sys-ok`)
	s.UserNS, s.HostNetwork = true, true
	s.Mounts = []Mount{{Type: MountBind, Source: host, Target: "/data", ReadOnly: true}, {Type: MountTmpfs, Target: "/scratch"}}
	if out := e.output(t, s); out != "from-host\nro-ok\ntmpfs-ok\nsys-ok\n" {
		t.Fatalf("output: %q", out)
	}
}
