package testimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// unpack writes the flattened file system of img into dir. It trusts the
// image (ours) and handles only directories, regular files and symlinks.
func unpack(img v1.Image, dir string) error {
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+hdr.Name))
		mode := os.FileMode(hdr.Mode & 0o777)
		switch hdr.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, mode)
			if err == nil {
				err = os.Chmod(p, mode|sticky(hdr.Mode))
			}
		case tar.TypeReg:
			err = writeFile(p, tr, mode)
		case tar.TypeSymlink:
			err = os.Symlink(hdr.Linkname, p)
		default:
			err = fmt.Errorf("unexpected type %q", hdr.Typeflag)
		}
		if err != nil {
			return fmt.Errorf("unpack %s: %w", hdr.Name, err)
		}
	}
}

func sticky(mode int64) os.FileMode {
	if mode&0o1000 != 0 {
		return os.ModeSticky
	}
	return 0
}

func writeFile(p string, r io.Reader, mode os.FileMode) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// rootfs unpacks img into a fresh temporary directory.
func rootfs(t *testing.T, img v1.Image) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to chroot into the unpacked image")
	}
	dir := t.TempDir()
	if err := unpack(img, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestBusyboxImageRunsShellInChroot(t *testing.T) {
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	dir := rootfs(t, img)
	cmd := exec.CommandContext(t.Context(), "/bin/sh", "-c", "id -un; id -un nobody; ls -ld /tmp; echo hi | cat")
	cmd.Dir = "/"
	cmd.Env = []string{defaultPath}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sh in chroot: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 4 || lines[0] != "root" || lines[1] != "nobody" ||
		!strings.HasPrefix(lines[2], "drwxrwxrwt") || lines[3] != "hi" {
		t.Errorf("sh in chroot printed:\n%s\nwant root, nobody, a 1777 /tmp and hi", out)
	}
}

func TestAppImageServesInChroot(t *testing.T) {
	img, err := App(t.Context(), "v7")
	if err != nil {
		t.Fatal(err)
	}
	dir := rootfs(t, img)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cf.Config.Entrypoint[0])
	cmd.Dir = "/"
	cmd.Env = slices.Concat(cf.Config.Env, []string{"HOST=127.0.0.1", "PORT=0"})
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: dir}
	app := runApp(t, cmd)
	code, body := request(t, http.MethodGet, app.url("/"))
	if code != http.StatusOK || !strings.Contains(body, `"version":"v7"`) {
		t.Errorf("GET /: %d %s, want version v7 from the image's env", code, body)
	}
	app.terminate(t)
}
