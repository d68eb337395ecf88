// Package e2e runs real berth clusters on test hosts: berth-manager and
// berth-agent processes, each in a network namespace of its own, running
// real containers from a local registry, driven through the berth CLI.
package e2e

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"berth/internal/e2ecluster"
)

var bins e2ecluster.Bins

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped, needs root (namespaces, containers)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "berth-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	bins, err = e2ecluster.Build(ctx, dir)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// up brings up a cluster for t and tears it down when t ends; on failure
// it prints the tail of every node's log.
func up(t *testing.T, managers, agents int, labels func(int) []string) *e2ecluster.Cluster {
	t.Helper()
	return upWith(t, e2ecluster.Options{Managers: managers, Agents: agents, AgentLabels: labels, SpareHosts: 1})
}

// upWith is up with more options; Bins and Dir are filled in.
func upWith(t *testing.T, opts e2ecluster.Options) *e2ecluster.Cluster {
	t.Helper()
	dir := t.TempDir()
	opts.Bins, opts.Dir = bins, dir
	c, err := e2ecluster.Up(t.Context(), opts)
	if err != nil {
		dumpLogs(t, dir)
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, dir)
		}
		if err := c.Close(); err != nil {
			t.Errorf("tear down: %v", err)
		}
	})
	return c
}

func dumpLogs(t *testing.T, dir string) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.IsDir() || len(e.Name()) < 4 || e.Name()[len(e.Name())-4:] != ".log" {
			continue
		}
		b, _ := os.ReadFile(dir + "/" + e.Name())
		if len(b) > 6000 {
			b = b[len(b)-6000:]
		}
		t.Logf("---- %s (tail) ----\n%s", e.Name(), b)
	}
}
