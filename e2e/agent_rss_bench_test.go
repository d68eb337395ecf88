package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"berth/internal/e2ecluster"
	"berth/internal/metrics/metricstest"
)

// BenchmarkAgentRSS100 measures a real berth-agent process running 100
// busybox `sleep` tasks (issue #17's aim: at most 30 MB). The agent's RSS
// is its own process's VmRSS after a forced GC (GET /debug/pprof/heap?
// gc=1 on its --metrics-addr); each container's init is a process of its
// own, not counted in it, and reported apart: its private memory
// (Private_Clean + Private_Dirty of smaps_rollup, what each container
// adds) and its RSS (shared pages counted whole), medians over the 100.
func BenchmarkAgentRSS100(b *testing.B) {
	const tasks, metricsPort = 100, 9323
	dir := b.TempDir()
	c, err := e2ecluster.Up(b.Context(), e2ecluster.Options{Managers: 1, Agents: 1, Bins: bins, Dir: dir, MetricsPort: metricsPort})
	if err != nil {
		logTails(b, dir)
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			logTails(b, dir)
		}
		if err := c.Close(); err != nil {
			b.Errorf("tear down: %v", err)
		}
	})
	agent := c.Agents[0]
	seq := 0
	for b.Loop() {
		seq++
		idle, _ := agentRSS(b, c, agent, "agent-idle")
		s := createService(b, c, fmt.Sprintf("sleepers-%d", seq), tasks)
		s.waitRunning(b, tasks)
		busy, anon := agentRSS(b, c, agent, "agent-100")
		logMemStats(b, c, agent)
		priv, rss := initMemory(b, agent)
		if len(priv) < tasks {
			b.Fatalf("%d container inits running, want %d", len(priv), tasks)
		}
		s.remove(b)
		b.ReportMetric(idle/1e6, "agent-idle-rss-MB")
		b.ReportMetric(busy/1e6, "agent-rss-MB")
		b.ReportMetric(anon/1e6, "agent-anon-MB")
		b.ReportMetric(median(priv), "init-private-kB")
		b.ReportMetric(median(rss), "init-rss-kB")
	}
}

// agentRSS forces a GC in the agent and returns its VmRSS and the anonymous
// part of it (RssAnon: heap, stacks; the rest is the binary's pages), in
// bytes. With $BERTH_PROFILE_DIR set it keeps the heap profile there.
func agentRSS(b *testing.B, c *e2ecluster.Cluster, n *e2ecluster.Node, name string) (rss, anon float64) {
	b.Helper()
	url := strings.TrimSuffix(c.MetricsURL(n), "/metrics") + "/debug/pprof/heap?gc=1"
	prof, err := e2ecluster.Get(b.Context(), url)
	if err != nil {
		b.Fatalf("force a GC in %s: %v", n.Name, err)
	}
	if dir := os.Getenv("BERTH_PROFILE_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".pb.gz"), []byte(prof), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	m, err := procStatus(n.PID(), "/status")
	if err != nil {
		b.Fatal(err)
	}
	return m["VmRSS"] * 1024, m["RssAnon"] * 1024
}

// initMemory reads the smaps_rollup of every container init the agent
// holds (their PIDs from the runtime's state files), in kB.
func initMemory(b *testing.B, n *e2ecluster.Node) (private, rss []float64) {
	b.Helper()
	states, err := filepath.Glob(filepath.Join(n.ContainerStateDir(), "*", "state.json"))
	if err != nil {
		b.Fatal(err)
	}
	for _, p := range states {
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		var st struct {
			Pid int `json:"pid"`
		}
		if err := json.Unmarshal(raw, &st); err != nil || st.Pid == 0 {
			b.Fatalf("%s: pid %d, %v", p, st.Pid, err)
		}
		m, err := procStatus(st.Pid, "/smaps_rollup")
		if errors.Is(err, fs.ErrNotExist) {
			continue // a container that exited, not yet deleted
		}
		if err != nil {
			b.Fatal(err)
		}
		private = append(private, m["Private_Clean"]+m["Private_Dirty"])
		rss = append(rss, m["Rss"])
	}
	return private, rss
}

// procStatus reads "Key: N kB" lines of /proc/PID/<file>.
func procStatus(pid int, file string) (map[string]float64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64); err == nil {
			out[k] = n
		}
	}
	return out, sc.Err()
}

// logMemStats logs where the agent's memory goes, from its Go runtime's
// metrics: the live heap, what the heap holds beyond it, stacks.
func logMemStats(b *testing.B, c *e2ecluster.Cluster, n *e2ecluster.Node) {
	f, err := metricstest.Scrape(b.Context(), c.MetricsURL(n))
	if err != nil {
		b.Fatal(err)
	}
	var parts []string
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", "go_memstats_heap_inuse_bytes",
		"go_memstats_heap_idle_bytes", "go_memstats_heap_released_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_sys_bytes"} {
		v, _ := f.Value(name)
		if name == "go_goroutines" {
			parts = append(parts, fmt.Sprintf("goroutines=%.0f", v))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s=%.1fM", strings.TrimPrefix(name, "go_memstats_"), v/1e6))
	}
	if dir := os.Getenv("BERTH_PROFILE_DIR"); dir != "" {
		url := strings.TrimSuffix(c.MetricsURL(n), "/metrics") + "/debug/pprof/goroutine?debug=1"
		if g, err := e2ecluster.Get(b.Context(), url); err == nil {
			os.WriteFile(filepath.Join(dir, "agent-100-goroutines.txt"), []byte(g), 0o644)
		}
	}
	b.Logf("agent with its tasks: %s", strings.Join(parts, " "))
}
