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

// BenchmarkRunVsRunc measures `berth-agent run --rm IMAGE true` of a pulled
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
	rc := newRuncBundle(b, runc, snapshotRootfs(b, data, ref))
	agentRun := func(extra ...string) time.Duration {
		args := append([]string{"run", "--data-dir", data, "--rm", "-q"}, extra...)
		cmd := exec.Command(bin, append(args, ref, "true")...)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("berth-agent run: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	for b.Loop() {
		// Interleaved, so that the load of a shared machine weighs on all
		// three alike.
		var ours, unconfined, theirs []time.Duration
		for range runs {
			ours = append(ours, agentRun())
			unconfined = append(unconfined, agentRun("--security-opt", "seccomp=unconfined"))
			theirs = append(theirs, rc.run(b))
		}
		o50, o99 := p50p99(ours)
		u50, _ := p50p99(unconfined)
		r50, r99 := p50p99(theirs)
		b.ReportMetric(o50, "berth-run-p50-ms")
		b.ReportMetric(o99, "berth-run-p99-ms")
		b.ReportMetric(u50, "berth-unconfined-p50-ms")
		b.ReportMetric(r50, "runc-run-p50-ms")
		b.ReportMetric(r99, "runc-run-p99-ms")
		b.ReportMetric(r50/o50, "runc/berth-p50")
		b.ReportMetric(r50/u50, "runc/berth-unconfined-p50")
	}
}

// pulledOffline builds berth-agent, pulls busybox into a fresh data dir
// from a test registry and stops the registry.
func pulledOffline(tb testing.TB) (bin, data, ref string) {
	tb.Helper()
	fx := testimage.Serve(tb)
	bin, data = buildAgent(tb), tb.TempDir()
	if out, err := exec.Command(bin, "run", "--data-dir", data, "--rm", "-q", fx.Busybox.Tag, "true").CombinedOutput(); err != nil {
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

// runcBundle is a bundle for `runc run` of `true` on a given rootfs.
type runcBundle struct {
	runc, bundle, state string
	spec                map[string]any
	n                   int
}

func newRuncBundle(tb testing.TB, runc, rootfs string) *runcBundle {
	tb.Helper()
	dir := tb.TempDir()
	r := &runcBundle{runc: runc, bundle: filepath.Join(dir, "bundle"), state: filepath.Join(dir, "state")}
	if err := os.MkdirAll(r.bundle, 0o755); err != nil {
		tb.Fatal(err)
	}
	if out, err := exec.Command(runc, "spec", "--bundle", r.bundle).CombinedOutput(); err != nil {
		tb.Fatalf("runc spec: %v %s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(r.bundle, "config.json"))
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(data, &r.spec); err != nil {
		tb.Fatal(err)
	}
	r.spec["root"] = map[string]any{"path": rootfs, "readonly": false}
	proc := r.spec["process"].(map[string]any)
	proc["args"], proc["terminal"] = []string{"true"}, false
	return r
}

// run runs one container to its exit as a whole `runc run` process and
// returns how long the process took.
func (r *runcBundle) run(tb testing.TB) time.Duration {
	tb.Helper()
	r.n++
	id := fmt.Sprintf("berth-bench-%d-%d", os.Getpid(), r.n)
	r.spec["linux"].(map[string]any)["cgroupsPath"] = "/" + id // runc removes it on exit
	data, _ := json.Marshal(r.spec)
	if err := os.WriteFile(filepath.Join(r.bundle, "config.json"), data, 0o644); err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(r.runc, "--root", r.state, "run", "--bundle", r.bundle, id)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("runc run: %v %s", err, out)
	}
	return time.Since(start)
}

// p50p99 returns the median and 99th percentile in milliseconds.
func p50p99(ds []time.Duration) (p50, p99 float64) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 { return float64(s[int(q*float64(len(s)-1))]) / float64(time.Millisecond) }
	return at(0.50), at(0.99)
}
