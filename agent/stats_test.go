package agent

import (
	"errors"
	"testing"
	"time"

	"berth/agent/runtime"
)

func TestSampleShowsWhatDockerStatsShows(t *testing.T) {
	t0 := time.Unix(100, 0)
	prev := usage{at: t0, stats: runtime.Stats{CPUUsage: time.Second}}
	cur := usage{at: t0.Add(2 * time.Second), rx: 10, tx: 20, stats: runtime.Stats{
		CPUUsage: 2 * time.Second, MemoryBytes: 100 << 20, MemoryInactiveFileBytes: 30 << 20, MemoryLimitBytes: 128 << 20,
		BlockReadBytes: 5, BlockWriteBytes: 6, Pids: 3,
	}}
	s := sample("t1", prev, cur)
	if s.GetCpuPercent() != 50 {
		t.Errorf("cpu = %v%%, want 50 (1 s of CPU in 2 s)", s.GetCpuPercent())
	}
	if s.GetMemoryBytes() != 70<<20 || s.GetMemoryLimitBytes() != 128<<20 {
		t.Errorf("memory = %d of %d, want 70 MiB (page cache left out) of 128 MiB", s.GetMemoryBytes(), s.GetMemoryLimitBytes())
	}
	if s.GetNetRxBytes() != 10 || s.GetNetTxBytes() != 20 || s.GetBlockReadBytes() != 5 || s.GetBlockWriteBytes() != 6 || s.GetPids() != 3 {
		t.Errorf("sample = %v", s)
	}

	// No earlier reading (the container just started): no CPU figure.
	if s := sample("t1", usage{err: errors.New("none")}, cur); s.GetCpuPercent() != 0 || s.GetMemoryBytes() == 0 {
		t.Errorf("sample without a previous reading = %v", s)
	}
	if s := sample("t1", prev, usage{err: errors.New("task t1 has no container on this node")}); s.GetError() == "" {
		t.Errorf("a task without a container has no error: %v", s)
	}
}
