package cgroups

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestSharesToWeight(t *testing.T) {
	for _, tc := range []struct{ shares, weight uint64 }{{0, 0}, {2, 1}, {1024, 39}, {262144, 10000}, {1 << 20, 10000}} {
		if got := SharesToWeight(tc.shares); got != tc.weight {
			t.Errorf("SharesToWeight(%d) = %d, want %d", tc.shares, got, tc.weight)
		}
	}
}

func TestCPUMax(t *testing.T) {
	if got := CPUMax(Resources{CPUQuota: 50000}); got != "50000 100000" {
		t.Errorf("CPUMax = %q", got)
	}
	if got := CPUMax(Resources{}); got != "max 100000" {
		t.Errorf("CPUMax unlimited = %q", got)
	}
}

func TestParseKeyed(t *testing.T) {
	m := parseKeyed([]byte("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"))
	if m["oom_kill"] != 3 {
		t.Fatalf("parsed %v", m)
	}
}

// TestV2OnUnifiedHierarchy exercises the v2 code path against the
// unified hierarchy that hybrid hosts mount at /sys/fs/cgroup/unified.
// There, memory, cpu and pids belong to v1, so only grouping, stats from
// cpu.stat and the missing-controller error can be checked.
func TestV2OnUnifiedHierarchy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create cgroups")
	}
	root := "/sys/fs/cgroup/unified"
	h, err := Detect(root)
	if err != nil || h.Version != V2 {
		t.Skipf("no cgroup2 mount at %s", root)
	}
	name := "berth-test-" + strconv.Itoa(os.Getpid())
	g, err := h.Create("/"+name, "c1")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := g.Remove(); err != nil {
			t.Error(err)
		}
		os.Remove(root + "/" + name)
	}()
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	if err := g.Join(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	pids, err := g.Pids()
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("pids = %v, %v", pids, err)
	}
	if _, err := g.Stats(); err != nil {
		t.Fatalf("stats: %v", err)
	}
	err = g.Set(Resources{MemoryBytes: 64 << 20})
	if offered, _ := os.ReadFile(root + "/cgroup.controllers"); !errors.Is(err, ErrControllerMissing) && !contains(strings.Fields(string(offered)), "memory") {
		t.Fatalf("memory limit without the controller: %v", err)
	}
	if err := g.Kill(); err != nil {
		t.Fatal(err)
	}
}

func TestParseBlockIO(t *testing.T) {
	v1 := []byte("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:16 Read 100\n8:16 Write 0\nTotal 12388\n")
	if r, w := parseBlkioV1(v1); r != 4196 || w != 8192 {
		t.Errorf("v1 blkio = %d read, %d written; want 4196, 8192", r, w)
	}
	v2 := []byte("8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=100 wbytes=0 rios=1 wios=0 dbytes=0 dios=0\n")
	if r, w := parseIOV2(v2); r != 4196 || w != 8192 {
		t.Errorf("v2 io.stat = %d read, %d written; want 4196, 8192", r, w)
	}
}
