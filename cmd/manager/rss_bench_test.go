package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/metrics/metricstest"
)

// BenchmarkManagerRSS measures a real berth-manager process holding 10k
// and 100k tasks (issue #17's aim: at most 3 KB a task, 300 MB at 100k):
// services of 1,000 replicas each, pending (the one node is a drained
// manager). It reads VmRSS from /proc after a forced GC (GET
// /debug/pprof/heap?gc=1), once the tasks are created and again after a
// restart (the state read back from the Raft snapshot and log), and
// reports both per task, with the live heap the GC left; each once the
// live heap has settled (see settle).
func BenchmarkManagerRSS(b *testing.B) {
	bins, err := e2ecluster.Build(b.Context(), b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	for _, tasks := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("tasks=%dk", tasks/1000), func(b *testing.B) {
			for b.Loop() {
				m := startRSSManager(b, bins)
				name := fmt.Sprintf("manager-%dk", tasks/1000)
				empty := m.rss(b, name+"-empty")
				m.createTasks(b, bins.CLI, tasks)
				created, createdHeap := m.settle(b, name+"-created")
				peak := m.status(b, "VmHWM")
				m.restart(b)
				m.awaitTasks(b, tasks)
				restarted, restartedHeap := m.settle(b, name+"-restarted")
				anon := m.status(b, "RssAnon") // the rest is files: the binary, raft.db's mmap
				m.stop()
				perTask := func(v float64) float64 { return v / float64(tasks) }
				b.ReportMetric(empty/1e6, "empty-rss-MB")
				b.ReportMetric(peak/1e6, "peak-rss-MB")
				b.ReportMetric(created/1e6, "rss-MB")
				b.ReportMetric(perTask(created), "rss-B/task")
				b.ReportMetric(perTask(createdHeap), "heap-B/task")
				b.ReportMetric(restarted/1e6, "restarted-rss-MB")
				b.ReportMetric(perTask(restarted), "restarted-rss-B/task")
				b.ReportMetric(perTask(restartedHeap), "restarted-heap-B/task")
				b.ReportMetric(anon/1e6, "restarted-anon-MB")
			}
		})
	}
}

// rssManager is one berth-manager process under measure.
type rssManager struct {
	cmd        *exec.Cmd
	args       []string
	bin, home  string
	metricsURL string
	logs       *bytes.Buffer
}

func startRSSManager(b *testing.B, bins e2ecluster.Bins) *rssManager {
	home := b.TempDir()
	metrics := freeAddr(b)
	m := &rssManager{bin: bins.Manager, home: home, metricsURL: "http://" + metrics,
		args: []string{"--data-dir", filepath.Join(home, "m"), "--listen-addr", freeAddr(b), "--metrics-addr", metrics}}
	m.start(b)
	b.Cleanup(m.stop)
	await.NoError(b, 60*time.Second, func() error {
		_, err := m.cli(b.Context(), bins.CLI, "node", "ls", "-q")
		return err
	}, "manager answers")
	return m
}

func (m *rssManager) start(b *testing.B) {
	m.cmd = exec.Command(m.bin, m.args...)
	m.cmd.Env = append(os.Environ(), "HOME="+m.home)
	m.logs = &bytes.Buffer{}
	m.cmd.Stdout, m.cmd.Stderr = m.logs, m.logs
	if err := m.cmd.Start(); err != nil {
		b.Fatal(err)
	}
}

func (m *rssManager) stop() {
	if m.cmd == nil || m.cmd.Process == nil || m.cmd.ProcessState != nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	m.cmd.Wait()
}

func (m *rssManager) restart(b *testing.B) {
	m.stop()
	m.start(b)
}

func (m *rssManager) cli(ctx context.Context, bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+m.home)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("berth %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// createTasks creates services of 1,000 replicas (a realistic spec:
// image, command, a few settings) on a network with room for them all
// (the default network's /16 holds 65k), and waits until the store holds
// every task and the manager's loops are done with them.
func (m *rssManager) createTasks(b *testing.B, cli string, tasks int) {
	if _, err := m.cli(b.Context(), cli, "network", "create", "--subnet", "10.128.0.0/14", "big"); err != nil {
		b.Fatal(err)
	}
	for i := range tasks / 1000 {
		args := []string{"service", "create", "-d", "--name", fmt.Sprintf("svc-%03d", i), "--replicas", "1000", "--network", "big"}
		for k := range 4 {
			args = append(args, "-e", fmt.Sprintf("SETTING_%d=%s", k, strings.Repeat("x", 40)))
		}
		args = append(args, "registry.local/app:v1", "sleep", "1000")
		if _, err := m.cli(b.Context(), cli, args...); err != nil {
			b.Fatal(err)
		}
	}
	m.awaitTasks(b, tasks)
}

// awaitTasks waits until the manager's store holds tasks pending tasks.
func (m *rssManager) awaitTasks(b *testing.B, tasks int) {
	await.NoError(b, 10*time.Minute, func() error {
		f, err := metricstest.Scrape(b.Context(), m.metricsURL+"/metrics")
		if err != nil {
			return err
		}
		if v, _ := f.Value("berth_tasks", "state", "pending"); int(v) != tasks {
			return fmt.Errorf("%v tasks pending, want %d", v, tasks)
		}
		return nil
	}, "%d tasks pending\n%s", tasks, m.logs)
}

// settle forces GCs 5 s apart until the live heap moves less than 2%
// between two of them (the manager's loops, or its replay of the Raft log
// after a restart, are done), and returns the VmRSS after the last one.
func (m *rssManager) settle(b *testing.B, name string) (rss, heap float64) {
	rss, heap = m.rss(b, name), m.heap(b)
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case <-time.After(5 * time.Second):
		case <-b.Context().Done():
			b.Fatal(b.Context().Err())
		}
		r, h := m.rss(b, name), m.heap(b)
		steady := h > heap*0.98 && h < heap*1.02
		rss, heap = r, h
		if steady {
			return rss, heap
		}
	}
	b.Fatalf("%s: the manager's heap did not settle in 5 min (at %.0f MB)", name, heap/1e6)
	return 0, 0
}

// rss forces a GC in the manager (the heap profile's gc=1) and returns its
// VmRSS in bytes. With $BERTH_PROFILE_DIR set it keeps the heap profile
// there as NAME.pb.gz (go tool pprof reads it).
func (m *rssManager) rss(b *testing.B, name string) float64 {
	ctx, cancel := context.WithTimeout(b.Context(), 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.metricsURL+"/debug/pprof/heap?gc=1", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		b.Fatalf("force a GC: %v", err)
	}
	defer resp.Body.Close()
	prof, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("force a GC: %s %v", resp.Status, err)
	}
	if dir := os.Getenv("BERTH_PROFILE_DIR"); dir != "" {
		if err := os.WriteFile(filepath.Join(dir, name+".pb.gz"), prof, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return m.status(b, "VmRSS")
}

// heap is the manager's live heap in bytes, as of its last GC.
func (m *rssManager) heap(b *testing.B) float64 {
	f, err := metricstest.Scrape(b.Context(), m.metricsURL+"/metrics")
	if err != nil {
		b.Fatal(err)
	}
	v, ok := f.Value("go_memstats_heap_alloc_bytes")
	if !ok {
		b.Fatal("no go_memstats_heap_alloc_bytes in /metrics")
	}
	return v
}

// status reads a "kB" field of /proc/PID/status, in bytes.
func (m *rssManager) status(b *testing.B, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", m.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("%s: %v", line, err)
			}
			return kb * 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, m.cmd.Process.Pid)
	return 0
}
