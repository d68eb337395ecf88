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
	"strings"
	"testing"
	"time"

	mseccomp "github.com/moby/profiles/seccomp"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// runTrue starts `true` in a container and waits for its exit; it returns
// the start-to-exit latency.
func runTrue(tb testing.TB, e *env, id string) time.Duration {
	return runSpec(tb, e, e.spec(id, "true"))
}

// runSpec runs s to its exit and returns the start-to-exit latency.
func runSpec(tb testing.TB, e *env, s Spec) time.Duration {
	start := time.Now()
	c, err := e.rt.Run(context.Background(), s)
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

// BenchmarkStartVsRunc runs `true` 100 times with our runtime and 100
// times with `runc run` on the same rootfs, in the same run, and reports
// both p50/p99 and the ratio (make bench installs Debian's runc). Ours
// runs under Docker's default seccomp profile, runc as `runc spec` makes
// it, without one; berth-unconfined and runc-seccomp are the other two
// cases, to show what the filter costs each.
func BenchmarkStartVsRunc(b *testing.B) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		b.Skip("runc not installed: `make bench` installs it")
	}
	const runs = 100
	e := newEnv(b)
	for i := 0; b.Loop(); i++ {
		var ours, unconfined []time.Duration
		for j := range runs {
			ours = append(ours, runTrue(b, e, fmt.Sprintf("cmp-%d-%d", i, j)))
			s := e.spec(fmt.Sprintf("cmp-unconfined-%d-%d", i, j), "true")
			s.Seccomp = "unconfined"
			unconfined = append(unconfined, runSpec(b, e, s))
		}
		o50, o99 := percentiles(ours)
		u50, _ := percentiles(unconfined)
		r50, r99 := percentiles(runcLatencies(b, e, runc, runs, false))
		rs50, _ := percentiles(runcLatencies(b, e, runc, runs, true))
		b.ReportMetric(o50, "berth-p50-ms")
		b.ReportMetric(o99, "berth-p99-ms")
		b.ReportMetric(u50, "berth-unconfined-p50-ms")
		b.ReportMetric(r50, "runc-p50-ms")
		b.ReportMetric(r99, "runc-p99-ms")
		b.ReportMetric(rs50, "runc-seccomp-p50-ms")
		b.ReportMetric(r50/o50, "runc/berth-p50")
	}
}

// BenchmarkStopTermIgnoringPID1 stops `sleep` (which, as PID 1, would
// ignore SIGTERM) with a 10 s grace: our init forwards the signal, so the
// stop is about immediate.
func BenchmarkStopTermIgnoringPID1(b *testing.B) {
	e := newEnv(b)
	var ds []time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		c := e.run(b, e.spec("stubborn-"+strconv.Itoa(i), "sleep", "1000"))
		b.StartTimer()
		start := time.Now()
		if _, err := c.Stop(context.Background(), 10*time.Second); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		b.StopTimer()
		must(b, c.Delete(context.Background()))
		b.StartTimer()
	}
	p50, p99 := percentiles(ds)
	b.ReportMetric(p50, "p50-ms")
	b.ReportMetric(p99, "p99-ms")
}

// runcLatencies runs `runc run` of `true` on e's rootfs, under Docker's
// default seccomp profile when filtered.
func runcLatencies(t testing.TB, e *env, runc string, n int, filtered bool) []time.Duration {
	bundle := filepath.Join(e.dir, "bundle")
	state := filepath.Join(e.dir, "runc-state")
	must(t, os.MkdirAll(bundle, 0o755))
	os.Remove(filepath.Join(bundle, "config.json")) // from an earlier call
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
	if filtered {
		var caps []string
		for _, c := range DefaultCapabilities {
			caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
		}
		proc["capabilities"] = map[string][]string{"bounding": caps, "effective": caps, "permitted": caps}
		profile, err := mseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}})
		must(t, err)
		spec["linux"].(map[string]any)["seccomp"] = profile
	}
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

// BenchmarkSyscallCost runs 400,000 system calls (busybox dd copying
// 200,000 single bytes: a read and a write each) in a container under
// Docker's default seccomp profile and unconfined, and reports the time
// per call of both: what the filter costs every syscall of every
// container. The filter finds a syscall by binary search on its number,
// and the kernel's action cache skips it for syscalls allowed whatever
// their arguments, so the two should be about level.
func BenchmarkSyscallCost(b *testing.B) {
	const bytes = 200000
	e := newEnv(b)
	per := func(id, seccomp string) float64 {
		s := e.spec(id, "dd", "if=/dev/zero", "of=/dev/null", "bs=1", "count="+strconv.Itoa(bytes))
		s.Seccomp = seccomp
		return float64(runSpec(b, e, s).Nanoseconds()) / (2 * bytes)
	}
	for i := 0; b.Loop(); i++ {
		var filtered, unconfined []float64
		for j := range 5 {
			filtered = append(filtered, per(fmt.Sprintf("sys-%d-%d", i, j), ""))
			unconfined = append(unconfined, per(fmt.Sprintf("sys-unconfined-%d-%d", i, j), "unconfined"))
		}
		sort.Float64s(filtered)
		sort.Float64s(unconfined)
		b.ReportMetric(filtered[2], "seccomp-ns/syscall")
		b.ReportMetric(unconfined[2], "unconfined-ns/syscall")
	}
}
