package vmtest

import (
	"context"
	"debug/elf"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// Program is a helper binary the tests need, built here since the VM has
// no go tool.
type Program struct {
	Package string // e.g. ./agent/runtime/testdata/sysprobe
	Path    string // where it goes in the VM
}

// Config is one `make test-cgroup2` run.
type Config struct {
	Suites    []Suite
	Programs  []Program
	Files     map[string]string // extra files: path in the VM → file here
	Env       []string          // the tests' environment, KEY=VALUE
	Out       string            // build directory: test binaries, initramfs, console log
	Cache     string            // kernel packages, kept across runs
	MemoryMiB int
	CPUs      int
	Verbose   bool
	Progress  io.Writer
	Log       *slog.Logger
}

// Run fetches the kernel, builds the test binaries and the initramfs,
// boots the VM and returns nil when every suite passed. It logs how long
// each step took.
func Run(ctx context.Context, cfg Config) error {
	if err := os.MkdirAll(cfg.Out, 0o755); err != nil {
		return err
	}
	step := stepTimer(cfg.Log)
	k, err := FetchKernel(ctx, cfg.Cache, cfg.Log)
	if err != nil {
		return err
	}
	step("kernel", "package", k.Package)
	if err := buildTests(ctx, cfg.Out, cfg.Suites); err != nil {
		return err
	}
	files, err := buildPrograms(ctx, cfg.Out, cfg.Programs, cfg.Files)
	if err != nil {
		return err
	}
	step("test binaries", "suites", len(cfg.Suites), "programs", len(cfg.Programs))
	if err := checkStatic(Busybox); err != nil {
		return err
	}
	initrd := filepath.Join(cfg.Out, "initramfs.cpio")
	img := Initramfs{Kernel: k, Busybox: Busybox, Files: files, Env: cfg.Env, Suites: cfg.Suites}
	if err := img.Write(initrd); err != nil {
		return err
	}
	disk, err := scratchDisk(cfg.Out)
	if err != nil {
		return err
	}
	step("initramfs", "path", initrd, "bytes", fileSize(initrd))
	console, err := os.Create(filepath.Join(cfg.Out, "console.log"))
	if err != nil {
		return err
	}
	defer console.Close()
	cfg.Log.Info("booting the cgroup v2 VM", "kvm", KVM(), "memory_mib", cfg.MemoryMiB, "cpus", cfg.CPUs, "console", console.Name())
	vm := VM{Kernel: k, Initramfs: initrd, Disk: disk, MemoryMiB: cfg.MemoryMiB, CPUs: cfg.CPUs,
		Console: console, Progress: cfg.Progress, Verbose: cfg.Verbose}
	rep, err := vm.Run(ctx)
	step("vm")
	if err != nil {
		return err
	}
	return rep.Err(cfg.Suites)
}

// Busybox is where Debian's busybox-static installs busybox; the tests
// look for it there too.
const Busybox = "/bin/busybox"

// checkStatic fails when bin needs a dynamic loader, which the VM has not.
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("%s: %w (apt-get install busybox-static)", bin, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked; the VM needs a static one (apt-get install busybox-static)", bin)
		}
	}
	return nil
}

// buildTests compiles each suite's package with `go test -c`, static like
// berth's binaries, into dir.
func buildTests(ctx context.Context, dir string, suites []Suite) error {
	for i := range suites {
		s := &suites[i]
		s.Binary = filepath.Join(dir, s.Name+".test")
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", s.Binary, s.Package)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go test -c %s: %w\n%s", s.Package, err, out)
		}
	}
	return nil
}

// buildPrograms builds each program, static, into dir and returns files
// with them added.
func buildPrograms(ctx context.Context, dir string, progs []Program, files map[string]string) (map[string]string, error) {
	all := make(map[string]string, len(files)+len(progs))
	for k, v := range files {
		all[k] = v
	}
	for _, p := range progs {
		out := filepath.Join(dir, filepath.Base(p.Path))
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, p.Package)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %w\n%s", p.Package, err, b)
		}
		all[p.Path] = out
	}
	return all, nil
}

// scratchDisk is a small raw disk for the VM: a real block device (vda)
// that a container must not be able to open.
func scratchDisk(dir string) (string, error) {
	p := filepath.Join(dir, "scratch.img")
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	return p, f.Truncate(1 << 20)
}

func stepTimer(log *slog.Logger) func(what string, args ...any) {
	last := time.Now()
	return func(what string, args ...any) {
		now := time.Now()
		log.Info(what, append([]any{"took", now.Sub(last).Round(100 * time.Millisecond)}, args...)...)
		last = now
	}
}

func fileSize(p string) int64 {
	st, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return st.Size()
}
