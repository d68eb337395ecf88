package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"berth/agent/image"
	"berth/internal/testimage"
)

// BenchmarkRunVsRunc measures `berth-agent run --rm -- true` of a pulled
// busybox image as a whole process, from the command's start to its exit,
// with the registry stopped, and `runc run` of `true` on a snapshot of the
// same image, in the same run (make bench installs Debian's runc). runc
// runs as `runc spec` makes it (no seccomp filter); berth under Docker's
// default profile, and unconfined as a third case.
func BenchmarkRunVsRunc(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("berth-agent run needs root (namespaces, cgroups, mounts)")
	}
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Skip("runc not installed: `make bench` installs it")
	}
	const runs = 50
	bin, data, ref := pulledOffline(b)
	rootfs := snapshotRootfs(b, data, ref)
	agentRun := func(extra ...string) []time.Duration {
		var ds []time.Duration
		for range runs {
			args := append([]string{"run", "--data-dir", data, "--rm", "-q", "--image", ref}, extra...)
			cmd := exec.Command(bin, append(args, "--", "true")...)
			start := time.Now()
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("berth-agent run: %v\n%s", err, out)
			}
			ds = append(ds, time.Since(start))
		}
		return ds
	}
	for b.Loop() {
		o50, o99 := p50p99(agentRun())
		u50, _ := p50p99(agentRun("--security-opt", "seccomp=unconfined"))
		r50, r99 := p50p99(runcRun(b, runc, rootfs, runs))
		b.ReportMetric(o50, "berth-run-p50-ms")
		b.ReportMetric(o99, "berth-run-p99-ms")
		b.ReportMetric(u50, "berth-unconfined-p50-ms")
		b.ReportMetric(r50, "runc-run-p50-ms")
		b.ReportMetric(r99, "runc-run-p99-ms")
		b.ReportMetric(r50/o50, "runc/berth-p50")
	}
}

// pulledOffline builds berth-agent, pulls busybox into a fresh data dir
// from a test registry and stops the registry.
func pulledOffline(tb testing.TB) (bin, data, ref string) {
	tb.Helper()
	fx := testimage.Serve(tb)
	bin, data = buildAgent(tb), tb.TempDir()
	if out, err := exec.Command(bin, "run", "--data-dir", data, "--rm", "-q", "--image", fx.Busybox.Tag, "--", "true").CombinedOutput(); err != nil {
		tb.Fatalf("first run (pull): %v\n%s", err, out)
	}
	if err := fx.Close(); err != nil {
		tb.Fatal(err)
	}
	return bin, data, fx.Busybox.Tag
}

// snapshotRootfs mounts a snapshot of ref, as berth-agent run makes one,
// for runc to run on; it is removed when tb ends.
func snapshotRootfs(tb testing.TB, data, ref string) string {
	tb.Helper()
	ctx := context.Background()
	images, err := image.New(image.Config{Root: filepath.Join(data, "images")})
	if err != nil {
		tb.Fatal(err)
	}
	img, err := images.Lookup(ref)
	if err != nil {
		tb.Fatal(err)
	}
	key := "runc-bench-" + strconv.Itoa(os.Getpid())
	rootfs, err := images.Prepare(ctx, key, img)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := images.Remove(ctx, key); err != nil {
			tb.Error(err)
		}
		images.Close()
	})
	return rootfs
}

// runcRun runs `runc run` of `true` n times on rootfs, each as a whole process.
func runcRun(tb testing.TB, runc, rootfs string, n int) []time.Duration {
	tb.Helper()
	dir := tb.TempDir()
	bundle, state := filepath.Join(dir, "bundle"), filepath.Join(dir, "state")
	if err := os.MkdirAll(bundle, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		tb.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		tb.Fatal(err)
	}
	spec["root"] = map[string]any{"path": rootfs, "readonly": false}
	proc := spec["process"].(map[string]any)
	proc["args"], proc["terminal"] = []string{"true"}, false
	var ds []time.Duration
	for i := range n {
		id := fmt.Sprintf("berth-bench-%d-%d", os.Getpid(), i)
		spec["linux"].(map[string]any)["cgroupsPath"] = "/" + id // runc removes it on exit
		data, _ := json.Marshal(spec)
		if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("runc run: %v %s", err, out)
		}
		ds = append(ds, time.Since(start))
	}
	return ds
}

// p50p99 returns the median and 99th percentile in milliseconds.
func p50p99(ds []time.Duration) (p50, p99 float64) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 { return float64(s[int(q*float64(len(s)-1))]) / float64(time.Millisecond) }
	return at(0.50), at(0.99)
}
