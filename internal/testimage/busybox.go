package testimage

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// BusyboxPath is where Debian's busybox-static package installs the
// statically linked busybox binary.
const BusyboxPath = "/bin/busybox"

// passwd and group give the image a root and a nobody account, enough for
// `id`, `ps` and user-switching tests.
const (
	passwd = "root:x:0:0:root:/root:/bin/sh\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
	group = "root:x:0:\n" +
		"nogroup:x:65534:\n" +
		"nobody:x:65534:\n"
)

// Busybox builds a busybox image from the static binary at BusyboxPath:
// one layer holding /bin/busybox, a symlink for every applet it lists,
// /etc/passwd and /etc/group, and /tmp with mode 1777. The image runs
// `sh` by default. The digest is the same on every run on the same host.
// The image is built once per process.
func Busybox() (v1.Image, error) {
	return BusyboxFrom(BusyboxPath)
}

// BusyboxFrom is Busybox with the binary read from bin, which must be a
// statically linked busybox that runs on this host (it is asked for its
// applet list).
func BusyboxFrom(bin string) (v1.Image, error) {
	return built.get("busybox "+bin, func() (v1.Image, error) { return buildBusybox(bin) })
}

func buildBusybox(bin string) (v1.Image, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("busybox image: %w (install Debian's busybox-static)", err)
		}
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	applets, err := listApplets(bin)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	entries := []entry{
		file("bin/busybox", 0o755, data),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("tmp", 0o1777),
		dir("root", 0o700),
		dir("proc", 0o555),
		dir("sys", 0o555),
		dir("dev", 0o755),
		dir("var", 0o755),
	}
	for _, a := range applets {
		entries = append(entries, symlink(a, "/bin/busybox"))
	}
	layer, err := newLayer(entries)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	cfg := v1.Config{
		Cmd:        []string{"sh"},
		Env:        []string{defaultPath},
		WorkingDir: "/",
	}
	img, err := newImage(cfg, layer, "busybox-static from "+bin)
	if err != nil {
		return nil, fmt.Errorf("busybox image: %w", err)
	}
	return img, nil
}

// listApplets asks busybox for the install path of each applet, relative
// to the root ("bin/sh", "usr/bin/wget"), leaving out the busybox binary
// itself and anything that is not a plain relative path.
func listApplets(bin string) ([]string, error) {
	out, err := exec.Command(bin, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list-full: %w", bin, err)
	}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p == "" || p == "bin/busybox" || p == "linuxrc" || path.IsAbs(p) || path.Clean(p) != p || strings.HasPrefix(p, "..") {
			continue
		}
		applets = append(applets, p)
	}
	if len(applets) == 0 {
		return nil, fmt.Errorf("%s --list-full: no applets", bin)
	}
	return applets, nil
}
