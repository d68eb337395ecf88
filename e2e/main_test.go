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

// upWith is up with more options; Bins is filled in.
func upWith(t *testing.T, opts e2ecluster.Options) *e2ecluster.Cluster {
	t.Helper()
	opts.Bins = bins
	return e2ecluster.UpForTest(t, opts)
}
