// Package faults is the fault suite: real berth clusters (three managers
// and agents, each a process in a network namespace of its own) run a
// Control API workload while scenarios inject faults (kill -9, partitions
// one-way and two-way, lossy links, a full disk, SIGSTOP, a restart of
// everything). Each run records a history checked for linearizability
// with porcupine (internal/faults) and, once the faults heal, checks
// invariants from the store and from the hosts' containers.
//
// Every scenario is bounded in time and replays from its seed: the seed
// is printed at the start, and `-seed N` (or BERTH_FAULTS_SEED=N) runs it
// again. `make faults` runs every scenario at full length on every store
// backend (-full or BERTH_FAULTS=full); `go test` alone runs the short form.
package faults

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"berth/internal/e2ecluster"
	"berth/internal/faults"
)

var (
	seedFlag = flag.Uint64("seed", 0, "seed to replay (printed by a run); 0 picks one ($BERTH_FAULTS_SEED)")
	fullFlag = flag.Bool("full", false, "run every scenario at full length on every backend ($BERTH_FAULTS=full)")
	allFlag  = flag.Bool("all", false, "run every scenario, at the short form's length")
	keepFlag = flag.String("keep", "", "keep each run's data dirs and node logs under this directory")
)

// bins are the binaries every scenario runs.
var bins e2ecluster.Bins

// report collects the rows of every scenario run, printed at the end.
var report struct {
	mu   sync.Mutex
	rows []faults.Row
}

func addRow(r faults.Row) {
	report.mu.Lock()
	defer report.mu.Unlock()
	report.rows = append(report.rows, r)
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("faults: skipped, needs root (namespaces, nftables, containers, tmpfs)")
		os.Exit(0)
	}
	for _, tool := range []string{"nft", "nsenter", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Printf("faults: skipped, needs %s (make deps)\n", tool)
			os.Exit(0)
		}
	}
	if err := sweepMounts(); err != nil {
		fmt.Fprintln(os.Stderr, "faults: sweep:", err)
	}
	var removeBins func()
	bins, removeBins = e2ecluster.BuildForMain("berth-faults-bin-")
	code := m.Run()
	if len(report.rows) > 0 {
		fmt.Println()
		faults.PrintTable(os.Stdout, report.rows)
	}
	removeBins()
	os.Exit(code)
}

// full reports whether this is the long form (make faults).
func full() bool { return *fullFlag || os.Getenv("BERTH_FAULTS") == "full" }

// baseSeed is the seed given, or a new one.
func baseSeed() uint64 {
	if *seedFlag != 0 {
		return *seedFlag
	}
	if s := os.Getenv("BERTH_FAULTS_SEED"); s != "" {
		if v, err := strconv.ParseUint(s, 10, 64); err == nil && v != 0 {
			return v
		}
	}
	return uint64(time.Now().UnixNano())
}
