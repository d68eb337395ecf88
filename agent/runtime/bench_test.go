package runtime

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
)

// runTrue starts `true` in a container and waits for its exit; it returns
// the start-to-exit latency.
func runTrue(tb testing.TB, e *env, id string) time.Duration {
	start := time.Now()
	c, err := e.rt.Run(context.Background(), e.spec(id, "true"))
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Wait(context.Background()); err != nil {
		tb.Fatal(err)
	}
	d := time.Since(start)
	if err := c.Delete(context.Background()); err != nil {
		tb.Fatal(err)
	}
	return d
}

func percentiles(ds []time.Duration) (p50, p99 float64) {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	at := func(q float64) float64 {
		return float64(s[int(q*float64(len(s)-1))]) / float64(time.Millisecond)
	}
	return at(0.50), at(0.99)
}

// BenchmarkStartTrue measures start-to-exit of `true` in a busybox
// container (namespaces, cgroup, rootfs, init, exit, cleanup).
func BenchmarkStartTrue(b *testing.B) {
	e := newEnv(b)
	var ds []time.Duration
	for i := 0; b.Loop(); i++ {
		ds = append(ds, runTrue(b, e, "bench-"+strconv.Itoa(i)))
	}
	p50, p99 := percentiles(ds)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
}

// TestLatencyTable compares our start-to-exit latency with runc's on the
// same rootfs and measures stopping a TERM-ignoring PID 1. It is a
// measurement, not a check: run with BERTH_BENCH=1 -v.
func TestLatencyTable(t *testing.T) {
	if os.Getenv("BERTH_BENCH") == "" {
		t.Skip("set BERTH_BENCH=1 to print the latency table")
	}
	const runs = 100
	e := newEnv(t)
	var ours []time.Duration
	for i := 0; i < runs; i++ {
		ours = append(ours, runTrue(t, e, "lat-"+strconv.Itoa(i)))
	}
	o50, o99 := percentiles(ours)
	t.Logf("%-34s %8s %8s", "start-to-exit of `true`", "p50 ms", "p99 ms")
	t.Logf("%-34s %8.2f %8.2f", "berth runtime", o50, o99)
	if runc, err := exec.LookPath("runc"); err == nil {
		rs := runcLatencies(t, e, runc, runs)
		r50, r99 := percentiles(rs)
		t.Logf("%-34s %8.2f %8.2f", "runc run", r50, r99)
		t.Logf("%-34s %7.1fx %7.1fx", "runc / berth", r50/o50, r99/o99)
	} else {
		t.Logf("runc not installed: no comparison")
	}
	s := e.spec("stubborn-pid1", "sleep", "1000") // sleep as PID 1 would ignore SIGTERM
	c := e.run(t, s)
	start := time.Now()
	if _, err := c.Stop(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("stop of `sleep 1000` (ignores TERM as PID 1), grace 10s: %.2f ms", float64(time.Since(start))/float64(time.Millisecond))
}

// runcLatencies runs `runc run` of `true` on e's rootfs.
func runcLatencies(t *testing.T, e *env, runc string, n int) []time.Duration {
	bundle := filepath.Join(e.dir, "bundle")
	state := filepath.Join(e.dir, "runc-state")
	must(t, os.MkdirAll(bundle, 0o755))
	if out, err := exec.Command(runc, "spec", "--bundle", bundle).CombinedOutput(); err != nil {
		t.Fatalf("runc spec: %v %s", err, out)
	}
	var spec map[string]any
	data, _ := os.ReadFile(filepath.Join(bundle, "config.json"))
	must(t, json.Unmarshal(data, &spec))
	spec["root"] = map[string]any{"path": e.rootfs, "readonly": false}
	proc := spec["process"].(map[string]any)
	proc["args"] = []string{"true"}
	proc["terminal"] = false
	var ds []time.Duration
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("%s%d-runc-%d", testPrefix, os.Getpid(), i)
		spec["linux"].(map[string]any)["cgroupsPath"] = "/" + testPrefix + strconv.Itoa(os.Getpid()) + "-runc/" + id
		data, _ := json.Marshal(spec)
		must(t, os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644))
		cmd := exec.Command(runc, "--root", state, "run", "--bundle", bundle, id)
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("runc run: %v %s", err, out)
		}
		ds = append(ds, time.Since(start))
	}
	return ds
}
