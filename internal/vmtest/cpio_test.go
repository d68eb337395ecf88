package vmtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestCPIOUnpacks writes an archive and unpacks it with busybox cpio, as
// the kernel would: parents come before children, contents and modes
// survive.
func TestCPIOUnpacks(t *testing.T) {
	if _, err := os.Stat(Busybox); err != nil {
		t.Skip("needs /bin/busybox (apt-get install busybox-static)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.WriteFile(src, []byte("from a host file"), 0o750); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := newCPIOWriter(&buf)
	w.Dir("/etc", 0o755)
	w.Bytes("etc/hosts", 0o644, []byte("127.0.0.1 localhost\n"))
	w.File("/opt/berth/bin/tool", src)
	w.Symlink("bin/sh", "/bin/busybox")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	cmd := exec.Command(Busybox, "cpio", "-i", "-d", "-m")
	cmd.Dir, cmd.Stdin = out, &buf
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("busybox cpio -i: %v: %s", err, b)
	}
	for name, want := range map[string]string{"etc/hosts": "127.0.0.1 localhost\n", "opt/berth/bin/tool": "from a host file"} {
		got, err := os.ReadFile(filepath.Join(out, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	if st, err := os.Stat(filepath.Join(out, "opt/berth/bin/tool")); err != nil || st.Mode().Perm() != 0o750 {
		t.Errorf("tool mode: %v, %v; want 0750", st.Mode(), err)
	}
	if l, err := os.Readlink(filepath.Join(out, "bin/sh")); err != nil || l != "/bin/busybox" {
		t.Errorf("bin/sh -> %q, %v", l, err)
	}
}

func TestCPIOReportsAMissingFile(t *testing.T) {
	w := newCPIOWriter(&bytes.Buffer{})
	w.File("bin/x", filepath.Join(t.TempDir(), "absent"))
	if err := w.Close(); err == nil {
		t.Fatal("an archive of a missing file closed without error")
	}
}
