package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/metrics/metricstest"
	"berth/internal/testimage"
)

// freeAddr is a free 127.0.0.1 port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestDevStatsAndMetrics: on `berth-manager --dev --metrics-addr`, `berth
// stats` shows a memory hog's usage rising to its limit and a busy loop's
// CPU, read from the cgroups of real containers (v1 here, v2 in make
// test-cgroup2); /metrics, parsed with Prometheus' text parser, counts
// the running tasks and the containers started.
func TestDevStatsAndMetrics(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containers")
	}
	if testing.Short() {
		t.Skip("builds the binaries and runs a cluster")
	}
	bins, err := e2ecluster.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	images := testimage.Serve(t)
	dir := t.TempDir()
	metricsURL := "http://" + freeAddr(t)
	// In the host's own network namespace: no overlay, so that the test
	// leaves no bridge or nftables table there (TestDevPublishes has one).
	mgr := exec.Command(bins.Manager, append([]string{"--dev", "--overlay=false", "--data-dir", dir, "--listen-addr", freeAddr(t), "--metrics-addr", strings.TrimPrefix(metricsURL, "http://"),
		"--cgroup-parent", e2ecluster.TestCgroupParent(t)}, storeArgs(t)...)...)
	mgr.Env = append(os.Environ(), "HOME="+dir)
	var logs bytes.Buffer
	mgr.Stdout, mgr.Stderr = &logs, &logs
	if err := mgr.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mgr.Process.Signal(syscall.SIGTERM)
		mgr.Wait()
		if err := e2ecluster.CleanupAgent(filepath.Join(dir, "agent")); err != nil {
			t.Errorf("clean up the --dev agent: %v", err)
		}
		if t.Failed() {
			t.Logf("berth-manager --dev log:\n%s", logs.String())
		}
	})
	cli := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bins.CLI, args...)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	await.True(t, 60*time.Second, func() bool {
		out, err := cli("node", "ls")
		return err == nil && strings.Count(out, "ready") == 2
	}, "the --dev manager and its agent are ready")

	before := scrape(t, metricsURL)
	starts0, _ := before.Value("berth_agent_container_starts_total", "result", "ok")

	// The hog fills its /dev/shm (a tmpfs, charged to it, not page cache)
	// 1 MiB every 0.5 s up to 24 MiB of its 32 MiB, then stays; the busy
	// loops are held to 0.2 CPU each, so that a slow machine (the v2 VM
	// under emulation) still runs the hog.
	hog := `for i in $(seq 24); do head -c 1048576 /dev/zero > /dev/shm/h$i; sleep 0.5; done; exec sleep 3600`
	if out, err := cli("service", "create", "--name", "hog", "--limit-memory", "32M", images.Busybox.Tag, "sh", "-c", hog); err != nil {
		t.Fatalf("create hog: %v\n%s", err, out)
	}
	if out, err := cli("service", "create", "--name", "busy", "--replicas", "2", "--limit-cpu", "0.2", images.Busybox.Tag, "sh", "-c", "while :; do :; done"); err != nil {
		t.Fatalf("create busy: %v\n%s", err, out)
	}
	testStatsRise(t, bins.CLI, dir)

	start := time.Now()
	out, err := cli("stats", "--no-stream")
	took := time.Since(start)
	if err != nil || !strings.Contains(out, "hog.1") || !strings.Contains(out, "busy.2") || !strings.Contains(out, "/ 32MiB") {
		t.Errorf("stats --no-stream: %v\n%s", err, out)
	}
	t.Logf("berth stats --no-stream took %v (one 1 s sampling period included):\n%s", took.Round(time.Millisecond), out)

	after := scrape(t, metricsURL)
	for _, c := range []struct {
		name   string
		labels []string
		want   func(float64) bool
		what   string
	}{
		{"berth_tasks", []string{"state", "running"}, func(v float64) bool { return v == 3 }, "3 (hog's 1 and busy's 2 replicas)"},
		{"berth_agent_container_starts_total", []string{"result", "ok"}, func(v float64) bool { return v == starts0+3 }, "3 more than before"},
		{"berth_agent_container_start_duration_seconds", nil, func(v float64) bool { return v >= 3 }, "3 or more starts timed"},
		{"berth_agent_image_pulls_total", []string{"result", "ok"}, func(v float64) bool { return v >= 1 }, "1 or more"},
		{"berth_scheduler_scheduling_latency_seconds", nil, func(v float64) bool { return v >= 3 }, "3 or more tasks timed"},
		{"berth_tasks_convergence_latency_seconds", nil, func(v float64) bool { return v >= 3 }, "3 or more tasks timed"},
		{"berth_raft_commit_duration_seconds", nil, func(v float64) bool { return v > 0 }, "some commits timed"},
		{"berth_raft_leader_changes_total", nil, func(v float64) bool { return v >= 1 }, "1 or more (the first election)"},
		{"berth_dispatcher_heartbeats_total", nil, func(v float64) bool { return v > 0 }, "some"},
	} {
		if v, ok := after.Value(c.name, c.labels...); !ok || !c.want(v) {
			t.Errorf("%s%v = %v (present: %v), want %s", c.name, c.labels, v, ok, c.what)
		}
	}
	checkNodeMetrics(t, after, cli)
	heap, err := e2ecluster.Get(t.Context(), metricsURL+"/debug/pprof/heap?debug=1")
	if err != nil || !strings.Contains(heap, "heap profile") {
		t.Errorf("heap profile at /debug/pprof/heap: %v %.200q", err, heap)
	}
}

// checkNodeMetrics: berth_nodes counts the nodes `berth node ls` lists,
// by status and availability.
func checkNodeMetrics(t *testing.T, f metricstest.Families, cli func(...string) (string, error)) {
	out, err := cli("node", "ls", "--format", "json")
	if err != nil {
		t.Fatalf("node ls: %v\n%s", err, out)
	}
	var nodes []struct {
		Status struct{ State string }        `json:"status"`
		Spec   struct{ Availability string } `json:"spec"`
	}
	if err := json.Unmarshal([]byte(out), &nodes); err != nil {
		t.Fatalf("node ls --format json: %v\n%s", err, out)
	}
	want := map[[2]string]float64{}
	for _, n := range nodes {
		state, avail := cmpOr(n.Status.State, "STATE_UNKNOWN"), cmpOr(n.Spec.Availability, "AVAILABILITY_ACTIVE")
		want[[2]string{strings.ToLower(strings.TrimPrefix(state, "STATE_")), strings.ToLower(strings.TrimPrefix(avail, "AVAILABILITY_"))}]++
	}
	for k, n := range want {
		if v, ok := f.Value("berth_nodes", "state", k[0], "availability", k[1]); !ok || v != n {
			t.Errorf("berth_nodes{state=%q,availability=%q} = %v, want %v as node ls lists:\n%s", k[0], k[1], v, n, out)
		}
	}
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func scrape(t *testing.T, url string) metricstest.Families {
	t.Helper()
	f, err := metricstest.Scrape(t.Context(), url+"/metrics")
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// statsSample is a line of `berth stats --format json`.
type statsSample struct {
	Name        string  `json:"name"`
	CPUPercent  float64 `json:"cpu_percent"`
	MemoryBytes string  `json:"memory_bytes"` // protojson writes uint64 as a string
	MemoryLimit string  `json:"memory_limit_bytes"`
	Error       string  `json:"error"`
}

// testStatsRise follows `berth stats --format json` until the hog has
// filled its memory, and checks that its usage rose to near its limit
// and that the busy loops use CPU.
func testStatsRise(t *testing.T, cliBin, home string) {
	ctx, cancel := context.WithTimeout(t.Context(), 180*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cliBin, "stats", "--format", "json", "hog", "busy")
	cmd.Env = append(os.Environ(), "HOME="+home)
	var out syncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	// Wait for all 3 tasks to run, so that the stream has them all from its start.
	await.True(t, 60*time.Second, func() bool {
		c := exec.CommandContext(ctx, cliBin, "stats", "--no-stream", "--format", "{{.Name}}")
		c.Env = cmd.Env
		o, err := c.Output()
		return err == nil && strings.Count(string(o), "\n") == 3
	}, "3 tasks running for stats")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()
	var hogMem []uint64
	var busyCPU float64
	await.True(t, 120*time.Second, func() bool {
		hogMem, busyCPU = hogMem[:0], 0
		for _, l := range strings.Split(out.String(), "\n") {
			var s statsSample
			if json.Unmarshal([]byte(l), &s) != nil {
				continue
			}
			if s.Error != "" {
				t.Fatalf("a sample with an error: %s", l)
			}
			if s.Name == "hog.1" {
				var mem uint64
				json.Unmarshal([]byte(s.MemoryBytes), &mem)
				hogMem = append(hogMem, mem)
				if s.MemoryLimit != "33554432" {
					t.Fatalf("hog's limit %q, want 33554432 (32 MiB): %s", s.MemoryLimit, l)
				}
			}
			if strings.HasPrefix(s.Name, "busy.") {
				busyCPU = max(busyCPU, s.CPUPercent)
			}
		}
		return len(hogMem) > 0 && hogMem[len(hogMem)-1] >= 24<<20
	}, "the hog's memory never reached 24 MiB: %v\n%s", &hogMem, &out)
	t.Logf("hog's memory per second (MiB): %v; busy loop CPU up to %.0f%%", mib(hogMem), busyCPU)
	if hogMem[0] >= hogMem[len(hogMem)-1] || hogMem[len(hogMem)-1] > 32<<20 {
		t.Errorf("hog's memory %v MiB: want it rising to its 32 MiB limit", mib(hogMem))
	}
	if busyCPU <= 0 {
		t.Errorf("a busy loop shows %v%% CPU, want more than 0", busyCPU)
	}
}

// syncBuf is a buffer a command writes while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mib(v []uint64) []uint64 {
	out := make([]uint64, len(v))
	for i, x := range v {
		out[i] = x >> 20
	}
	return out
}
