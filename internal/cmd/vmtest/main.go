// Command vmtest runs berth's runtime, cgroups, image and agent tests and
// a `berth-manager --dev` cluster in a qemu VM whose cgroup filesystem is
// cgroup v2 only (package internal/vmtest). `make test-cgroup2` runs it
// after building the binaries; it exits non-zero when a test fails.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"berth/internal/e2ecluster"
	"berth/internal/testimage"
	"berth/internal/vmtest"
)

// suites are the packages whose tests run in the VM. -test.v lets the
// host count passes and list skips.
func suites() []vmtest.Suite {
	args := func(extra ...string) []string {
		return append([]string{"-test.v", "-test.count=1", "-test.timeout=15m"}, extra...)
	}
	return []vmtest.Suite{
		{Name: "cgroups", Package: "./agent/runtime/cgroups", Args: args()},
		// TestEmbeddedInitIsCurrent checks the source tree with the go tool
		// against the embedded init: a build-host matter, which make test covers.
		{Name: "runtime", Package: "./agent/runtime", Args: args("-test.skip=^TestEmbeddedInitIsCurrent$")},
		{Name: "image", Package: "./agent/image", Args: args()},
		{Name: "agent", Package: "./agent", Args: args()},
		{Name: "manager", Package: "./cmd/manager", Args: args("-test.run=^(TestDevRunsContainers|TestDevStatsAndMetrics)$")},
	}
}

// options are the command's flags.
type options struct {
	bin, out, cache string
	suites, run     string
	memory, cpus    int
	verbose         bool
}

func main() {
	var o options
	flag.StringVar(&o.bin, "bin", "bin", "directory of the built berth, berth-manager and berth-agent")
	flag.StringVar(&o.out, "out", "bin/cgroup2-vm", "build directory: test binaries, initramfs, console.log")
	flag.StringVar(&o.cache, "cache", "/var/cache/berth-vmtest", "where downloaded kernel packages are kept")
	flag.StringVar(&o.suites, "suites", "", "comma-separated suites to run (default all: cgroups,runtime,image,agent,manager)")
	flag.StringVar(&o.run, "run", "", "run only the tests matching this regexp (go test -run) in each suite")
	flag.IntVar(&o.memory, "memory", 4096, "VM memory in MiB")
	flag.IntVar(&o.cpus, "cpus", 2, "VM CPUs")
	timeout := flag.Duration("timeout", 30*time.Minute, "bound on the whole run")
	flag.BoolVar(&o.verbose, "v", false, "copy the whole VM console to stdout")
	flag.Parse()

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	start := time.Now()
	err := run(ctx, log, o)
	log.Info("make test-cgroup2", "took", time.Since(start).Round(time.Second), "ok", err == nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test-cgroup2:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, o options) error {
	picked, err := pick(suites(), o.suites)
	if err != nil {
		return err
	}
	if o.run != "" {
		for i := range picked {
			args := picked[i].Args
			picked[i].Args = append(args[:len(args):len(args)], "-test.run="+o.run)
		}
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	// The VM has no go tool: the test app the registry serves is built here.
	app, err := testimage.AppBinary(ctx)
	if err != nil {
		return err
	}
	appPath := filepath.Join(o.out, "testapp")
	if err := os.WriteFile(appPath, app, 0o755); err != nil {
		return err
	}
	const vmBin = "/opt/berth/bin"
	files := map[string]string{vmBin + "/testapp": appPath}
	for _, b := range []string{"berth", "berth-manager", "berth-agent"} {
		files[vmBin+"/"+b] = filepath.Join(o.bin, b)
	}
	return vmtest.Run(ctx, vmtest.Config{
		Suites:   picked,
		Programs: []vmtest.Program{{Package: "./agent/runtime/testdata/sysprobe", Path: vmBin + "/sysprobe"}},
		Files:    files,
		Env: []string{
			"HOME=/root", "TMPDIR=/tmp",
			// 50 start/stop cycles: 200 take minutes on an emulated CPU.
			"BERTH_LEAK_CYCLES=50",
			e2ecluster.BinDirEnv + "=" + vmBin,
			testimage.AppBinaryEnv + "=" + vmBin + "/testapp",
			"BERTH_SYSPROBE=" + vmBin + "/sysprobe", // agent/runtime's seccomp tests
		},
		Out: o.out, Cache: o.cache, MemoryMiB: o.memory, CPUs: o.cpus, Verbose: o.verbose,
		Progress: os.Stdout, Log: log,
	})
}

// pick returns the suites named in only (comma-separated), or all.
func pick(all []vmtest.Suite, only string) ([]vmtest.Suite, error) {
	if only == "" {
		return all, nil
	}
	var out []vmtest.Suite
	for _, name := range strings.Split(only, ",") {
		found := false
		for _, s := range all {
			if s.Name == name {
				out, found = append(out, s), true
			}
		}
		if !found {
			return nil, fmt.Errorf("-suites: no suite %q (have cgroups, runtime, image, agent, manager)", name)
		}
	}
	return out, nil
}
