package testimage

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// FromHostBinary builds an image of a dynamically linked program of this
// host (such as Debian's /usr/bin/redis-server): one layer holding the
// binary and every library `ldd` lists, the loader included, at the paths
// ldd names, plus /tmp and the passwd and group files. The image runs cmd
// (the binary and its arguments). Built once per process and binary.
func FromHostBinary(bin string, cmd ...string) (v1.Image, error) {
	return built.get("host "+bin+" "+strings.Join(cmd, " "), func() (v1.Image, error) { return buildFromHost(bin, cmd) })
}

func buildFromHost(bin string, cmd []string) (v1.Image, error) {
	libs, err := lddPaths(bin)
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", bin, err)
	}
	entries := []entry{
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("tmp", 0o1777),
		dir("proc", 0o555),
		dir("sys", 0o555),
		dir("dev", 0o755),
	}
	for _, p := range append([]string{bin}, libs...) {
		data, err := os.ReadFile(p) // through symlinks: the image holds the file
		if err != nil {
			return nil, fmt.Errorf("image of %s: %w", bin, err)
		}
		entries = append(entries, file(strings.TrimPrefix(p, "/"), 0o755, data))
	}
	layer, err := newLayer(entries)
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", bin, err)
	}
	img, err := newImage(v1.Config{Cmd: append([]string{bin}, cmd...), Env: []string{defaultPath}, WorkingDir: "/tmp"}, layer, bin+" and its libraries from the host")
	if err != nil {
		return nil, fmt.Errorf("image of %s: %w", bin, err)
	}
	return img, nil
}

// lddPaths lists the absolute paths of the libraries ldd says bin loads.
func lddPaths(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).Output()
	if err != nil {
		return nil, fmt.Errorf("ldd %s: %w", bin, err)
	}
	var paths []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		for _, f := range strings.Fields(sc.Text()) {
			if strings.HasPrefix(f, "/") {
				paths = append(paths, f)
				break
			}
		}
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("ldd %s lists no library: not a dynamic binary?", bin)
	}
	return paths, nil
}
