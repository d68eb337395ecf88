package testimage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// AppPackage is the import path of the test application.
const AppPackage = "berth/internal/testimage/app"

// AppPort is the port the app listens on when $PORT is not set.
const AppPort = 8080

// appBinary caches the built app for the life of the process: building it
// takes seconds and every test wants the same bytes. Only a successful
// build is cached, so a cancelled first build does not poison later ones.
var appBinary struct {
	mu  sync.Mutex
	bin []byte
}

// AppBinaryEnv names a file holding the test app already built (by
// AppBinary on another machine); AppBinary then reads it instead of
// building. The cgroup v2 VM (make test-cgroup2) sets it: it has no go tool.
const AppBinaryEnv = "BERTH_TESTIMAGE_APP"

// AppBinary returns the test app compiled as a static linux binary for the
// host's architecture. The first call runs `go build` (the go tool must be
// on PATH and the process must run inside the berth module, or from a
// binary whose source tree is still in place) unless $BERTH_TESTIMAGE_APP
// names a prebuilt one; later calls return the cached bytes. Callers must
// not modify the returned slice.
func AppBinary(ctx context.Context) ([]byte, error) {
	appBinary.mu.Lock()
	defer appBinary.mu.Unlock()
	if appBinary.bin != nil {
		return appBinary.bin, nil
	}
	var bin []byte
	var err error
	if pre := os.Getenv(AppBinaryEnv); pre != "" {
		bin, err = os.ReadFile(pre)
		if err != nil {
			err = fmt.Errorf("prebuilt %s ($%s): %w", AppPackage, AppBinaryEnv, err)
		}
	} else {
		bin, err = buildApp(ctx)
	}
	if err != nil {
		return nil, err
	}
	appBinary.bin = bin
	return bin, nil
}

// App builds the test app image for version: one layer holding /app (the
// binary from AppBinary), /etc/passwd, /etc/group and /tmp, with /app as
// the entrypoint and APP_VERSION=version and PORT in the environment.
// Different versions give different digests; the same version gives the
// same digest on every run with the same source and toolchain. Each
// version is built once per process.
func App(ctx context.Context, version string) (v1.Image, error) {
	return built.get("app "+version, func() (v1.Image, error) { return buildAppImage(ctx, version) })
}

func buildAppImage(ctx context.Context, version string) (v1.Image, error) {
	bin, err := AppBinary(ctx)
	if err != nil {
		return nil, fmt.Errorf("app image %s: %w", version, err)
	}
	layer, err := newLayer([]entry{
		file("app", 0o755, bin),
		file("etc/passwd", 0o644, []byte(passwd)),
		file("etc/group", 0o644, []byte(group)),
		dir("tmp", 0o1777),
		dir("proc", 0o555),
		dir("sys", 0o555),
		dir("dev", 0o755),
	})
	if err != nil {
		return nil, fmt.Errorf("app image %s: %w", version, err)
	}
	cfg := v1.Config{
		Entrypoint:   []string{"/app"},
		Env:          []string{defaultPath, "APP_VERSION=" + version, fmt.Sprintf("PORT=%d", AppPort)},
		ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", AppPort): {}},
		WorkingDir:   "/",
	}
	img, err := newImage(cfg, layer, "go build "+AppPackage)
	if err != nil {
		return nil, fmt.Errorf("app image %s: %w", version, err)
	}
	return img, nil
}

// buildApp compiles AppPackage into a temporary directory and returns the
// binary's bytes. The build is reproducible: no cgo, no VCS stamp, no
// file-system paths, no symbol table.
func buildApp(ctx context.Context) ([]byte, error) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		return nil, fmt.Errorf("build %s: go tool: %w", AppPackage, err)
	}
	tmp, err := os.MkdirTemp("", "berth-testimage-app-")
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", AppPackage, err)
	}
	defer os.RemoveAll(tmp)
	out := filepath.Join(tmp, "app")
	cmd := exec.CommandContext(ctx, goTool, "build", "-trimpath", "-buildvcs=false",
		"-ldflags=-s -w", "-o", out, AppPackage)
	cmd.Dir = sourceDir()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("build %s: %w: %s", AppPackage, err, bytes.TrimSpace(stderr.Bytes()))
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", AppPackage, err)
	}
	return bin, nil
}

// sourceDir is the directory to run `go build` in: this package's source
// directory when the binary was built without -trimpath and the tree is
// still there, else the working directory (which then must lie inside the
// berth module).
func sourceDir() string {
	_, self, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(self) {
		return ""
	}
	d := filepath.Dir(self)
	if _, err := os.Stat(filepath.Join(d, "app")); err != nil {
		return ""
	}
	return d
}
