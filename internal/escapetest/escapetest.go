// Package escapetest checks, from inside a container, that nothing of the
// host is reachable through inherited descriptors or the working
// directory (the class of runc's CVE-2024-21626). It is for tests only.
//
// A test plants a marker file on the host with Plant, runs Script in a
// container (as its command, a service task or an exec) and hands the
// output to Check, which fails the test if the process held descriptors
// other than 0, 1 and 2 or could read the marker by any /proc/*/fd,
// /proc/*/cwd or relative path.
package escapetest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// Marker is a host file with unguessable content.
type Marker struct {
	Path    string // absolute host path
	Content string
}

// Plant writes a marker file into the host directory dir.
func Plant(t testing.TB, dir string) Marker {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	m := Marker{Path: filepath.Join(dir, "escape-marker"), Content: "host-secret-" + hex.EncodeToString(b)}
	if err := os.WriteFile(m.Path, []byte(m.Content+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return m
}

// up climbs far enough from any host directory to reach the host's root.
var up = strings.Repeat("../", 40)

// Script is a busybox sh script that lists its own descriptors and tries
// to read the marker through every descriptor of itself and of PID 1,
// through both processes' cwd and root, and relative to its own cwd.
func (m Marker) Script() string {
	rel := strings.TrimPrefix(m.Path, "/")
	base := filepath.Base(m.Path)
	return `echo fds-begin; ls -l /proc/$$/fd; echo fds-end
for f in /proc/$$/fd/* /proc/1/fd/* /proc/$$/cwd /proc/1/cwd /proc/1/root . ; do
  cat "$f/` + up + rel + `" "$f/` + base + `" "$f/../` + base + `" "$f/../../` + base + `" "$f/../../../` + base + `" 2>/dev/null
done
cat ` + up + rel + ` 2>/dev/null
echo probe-done`
}

// Check fails t unless out, the script's output, shows exactly the
// descriptors 0, 1 and 2 and no trace of the marker.
func (m Marker) Check(t testing.TB, out string) {
	t.Helper()
	if !strings.Contains(out, "probe-done") {
		t.Fatalf("the probe did not finish: %q", out)
	}
	if strings.Contains(out, m.Content) {
		t.Errorf("the container read the host file %s through a descriptor or its working directory:\n%s", m.Path, out)
	}
	begin, end := strings.Index(out, "fds-begin"), strings.Index(out, "fds-end")
	if begin < 0 || end < begin {
		t.Fatalf("no descriptor list in %q", out)
	}
	fds := map[string]string{}
	for _, l := range strings.Split(out[begin+len("fds-begin"):end], "\n") {
		f := strings.Fields(l)
		if i := slices.Index(f, "->"); i > 0 && i+1 < len(f) {
			fds[f[i-1]] = f[i+1]
		} else if len(f) > 0 && f[0] != "total" {
			fds[f[len(f)-1]] = "?"
		}
	}
	// busybox sh opens /dev/null as descriptor 10 for itself at start.
	if fds["10"] == "/dev/null" {
		delete(fds, "10")
	}
	var got []string
	for fd := range fds {
		got = append(got, fd)
	}
	slices.Sort(got)
	if !slices.Equal(got, []string{"0", "1", "2"}) {
		t.Errorf("the container's process holds descriptors %v, want exactly [0 1 2]:\n%s", got, out)
	}
}
