package runtime

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// needEmbeddedInit fails a test when this test binary carries no init:
// make builds it before compiling anything (make build-init).
func needEmbeddedInit(t *testing.T) []byte {
	t.Helper()
	data := embeddedInitBinary()
	if data == nil {
		t.Fatalf("built without the dedicated container init: run `make build-init` (it writes %s)", filepath.Join("agent/runtime", embeddedInit))
	}
	return data
}

// TestContainersRunTheDedicatedInit: with no InitPath the runtime writes
// the embedded berth-init to its data dir and every container's PID 1
// runs that file, not the agent (here: the test binary) re-executed.
func TestContainersRunTheDedicatedInit(t *testing.T) {
	data := needEmbeddedInit(t)
	if os.Getenv("BERTH_INIT_PATH") != "" {
		t.Skip("BERTH_INIT_PATH chooses another init")
	}
	e := newEnv(t)
	want := filepath.Join(e.dir, "data", initFile)
	if e.rt.InitPath() != want {
		t.Fatalf("runtime uses init %s, want the embedded one at %s", e.rt.InitPath(), want)
	}
	c := e.run(t, e.spec("dedicated", "sleep", "1000"))
	// Compare files, not paths: the link names the file as the container's
	// mount namespace has it, relative to its mount (a tmpfs /tmp shows
	// only the part below /tmp).
	exe := "/proc/" + strconv.Itoa(c.Pid()) + "/exe"
	running, err := os.Stat(exe)
	must(t, err)
	wantSt, err := os.Stat(want)
	must(t, err)
	if !os.SameFile(running, wantSt) {
		link, _ := os.Readlink(exe)
		t.Fatalf("container PID 1 runs %s, want %s", link, want)
	}
	onDisk, err := os.ReadFile(want)
	must(t, err)
	if !bytes.Equal(onDisk, data) {
		t.Fatal("the init in the data dir differs from the embedded one")
	}
	st, err := os.Stat(want)
	must(t, err)
	if st.Mode().Perm() != 0o755 {
		t.Fatalf("init mode %v, want 0755", st.Mode().Perm())
	}
}

// TestInitRewrittenWhenDifferent: a changed (or truncated) init in the
// data dir is replaced by the embedded one when a runtime starts; an
// identical one is kept as it is.
func TestInitRewrittenWhenDifferent(t *testing.T) {
	data := needEmbeddedInit(t)
	dir := t.TempDir()
	path, err := installInit(dir)
	must(t, err)
	st1, err := os.Stat(path)
	must(t, err)
	if _, err := installInit(dir); err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat(path)
	must(t, err)
	if !os.SameFile(st1, st2) {
		t.Fatal("an identical init was rewritten")
	}
	flipped := bytes.Clone(data)
	flipped[len(flipped)/2] ^= 1
	for name, bad := range map[string][]byte{"a script": []byte("#!/bin/sh\necho tampered\n"), "one byte changed": flipped} {
		must(t, os.WriteFile(path, bad, 0o755))
		if _, err := installInit(dir); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		must(t, err)
		if !bytes.Equal(got, data) {
			t.Fatalf("an init in the data dir changed to %s was not replaced by the embedded one", name)
		}
	}
}

// TestEmbeddedInitIsCurrent: the embedded init is the one the current
// source builds (with make build-init's flags), not one left over from an
// older checkout.
func TestEmbeddedInitIsCurrent(t *testing.T) {
	data := needEmbeddedInit(t)
	if testing.Short() {
		t.Skip("builds the init")
	}
	out := filepath.Join(t.TempDir(), "berth-init")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, "berth/internal/cmd/berth-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build berth-init: %v\n%s", err, msg)
	}
	fresh, err := os.ReadFile(out)
	must(t, err)
	if !bytes.Equal(fresh, data) {
		t.Fatalf("the embedded init (%d bytes) is not what the source builds (%d bytes): run `make build-init` and rebuild", len(data), len(fresh))
	}
	if strings.Contains(string(fresh), "google.golang.org/grpc") {
		t.Fatal("berth-init links gRPC")
	}
}
