package vmtest

import (
	_ "embed"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed guest/init.sh
var initScript []byte

// Suite is one package's tests, run in the VM as a `go test -c` binary.
type Suite struct {
	Name    string   // short name, also the binary's directory in the VM
	Package string   // e.g. ./agent/runtime
	Args    []string // the binary's flags, e.g. -test.run ^TestX$
	Binary  string   // the test binary on this host, once built
}

// Initramfs describes the VM's whole file system.
type Initramfs struct {
	Kernel  *Kernel
	Busybox string            // a static busybox on this host
	Files   map[string]string // path in the VM → file on this host
	Env     []string          // KEY=VALUE for the tests; values without spaces or quotes
	Suites  []Suite
}

// Write builds the initramfs as an uncompressed newc archive at out: the
// kernel unpacks that fastest, and it is only ever read from this disk.
func (r Initramfs) Write(out string) error {
	mods, err := resolveModules(r.Kernel.ModulesDir(), berthModules())
	if err != nil {
		return err
	}
	applets, err := busyboxApplets(r.Busybox)
	if err != nil {
		return err
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	defer os.Remove(out + ".tmp")
	w := newCPIOWriter(f)
	for _, d := range []string{"dev", "proc", "sys", "tmp", "run", "root", "newroot", "etc", "sys/fs/cgroup"} {
		w.Dir(d, 0o755)
	}
	w.CharDev("dev/console", 0o600, 5, 1)
	w.Bytes("init", 0o755, initScript)
	w.File("bin/busybox", r.Busybox)
	for _, a := range applets {
		w.Symlink(a, "/bin/busybox")
	}
	w.Bytes("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	w.Bytes("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	w.Bytes("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n::1 localhost\n"))
	var modList []string
	for _, m := range mods {
		w.File(path.Join("lib/modules", m), filepath.Join(r.Kernel.ModulesDir(), m))
		modList = append(modList, m)
	}
	w.Bytes("vmtest/modules", 0o644, lines(modList))
	for _, dst := range sortedKeys(r.Files) {
		w.File(dst, r.Files[dst])
	}
	w.Bytes("vmtest/env", 0o644, lines(r.Env))
	var plan []string
	for _, s := range r.Suites {
		w.File(path.Join("vmtest", s.Name, s.Name+".test"), s.Binary)
		plan = append(plan, strings.Join(append([]string{s.Name}, s.Args...), " "))
	}
	w.Bytes("vmtest/suites", 0o644, lines(plan))
	if err := w.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return os.Rename(out+".tmp", out)
}

// busyboxApplets lists the paths busybox installs its applets at
// ("bin/sh", "sbin/insmod"), leaving out busybox itself.
func busyboxApplets(bin string) ([]string, error) {
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox %s --list-full: %w (install busybox-static)", bin, err)
	}
	var applets []string
	for _, a := range strings.Fields(string(out)) {
		if a != "bin/busybox" && a != "linuxrc" && !path.IsAbs(a) && !strings.Contains(a, "..") {
			applets = append(applets, a)
		}
	}
	return applets, nil
}

func lines(l []string) []byte {
	if len(l) == 0 {
		return nil
	}
	return []byte(strings.Join(l, "\n") + "\n")
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
