// Package e2e runs real berth clusters on test hosts: berth-manager and
// berth-agent processes, each in a network namespace of its own, running
// real containers from a local registry, driven through the berth CLI.
package e2e

import (
	"fmt"
	"os"
	"testing"

	"berth/internal/e2ecluster"
)

var bins e2ecluster.Bins

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("e2e: skipped, needs root (namespaces, containers)")
		os.Exit(0)
	}
	var removeBins func()
	bins, removeBins = e2ecluster.BuildForMain("berth-e2e-bin-")
	code := m.Run()
	removeBins()
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
