package main

import (
	"bytes"
	"strings"
	"testing"

	pb "berth/proto/berth/v1"
)

func TestStatsTableShowsWhatDockerStatsShows(t *testing.T) {
	var b bytes.Buffer
	p, err := newStatsPrinter("table", &b, false)
	if err != nil {
		t.Fatal(err)
	}
	p.add([]*pb.TaskStats{
		{TaskId: "bbbbbbbbbbbbbbbbbbbb", Name: "web.2", CpuPercent: 99.5, MemoryBytes: 30 << 20, MemoryLimitBytes: 32 << 20,
			NetRxBytes: 1500, NetTxBytes: 2_500_000, BlockReadBytes: 0, BlockWriteBytes: 4096, Pids: 3},
		{TaskId: "aaaaaaaaaaaaaaaaaaaa", Name: "web.1", Error: "node n3 has no session with the managers (it is down or unreachable)"},
	})
	if err := p.print(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	want := []string{
		"TASK ID        NAME    CPU %    MEM USAGE / LIMIT   MEM %    NET I/O         BLOCK I/O     PIDS",
		"aaaaaaaaaaaa   web.1   --       -- / --             --       -- / --         -- / --       --",
		"bbbbbbbbbbbb   web.2   99.50%   30MiB / 32MiB       93.75%   1.5kB / 2.5MB   0B / 4.096kB   3",
		"web.1 (aaaaaaaaaaaa): node n3 has no session with the managers (it is down or unreachable)",
	}
	for i, w := range want {
		if i >= len(lines) || strings.Join(strings.Fields(lines[i]), " ") != strings.Join(strings.Fields(w), " ") {
			t.Fatalf("stats table:\n%s\nwant line %d: %q", b.String(), i, w)
		}
	}

	b.Reset()
	p, err = newStatsPrinter("{{.Name}} {{.MemUsage}} {{.PIDs}}", &b, false)
	if err != nil {
		t.Fatal(err)
	}
	p.add([]*pb.TaskStats{{TaskId: "t", Name: "web.1", MemoryBytes: 1536, Pids: 2}})
	if err := p.print(); err != nil || b.String() != "web.1 1.5KiB / unlimited 2\n" {
		t.Fatalf("template: %v %q", err, b.String())
	}
	// A task that stopped leaves the view.
	b.Reset()
	p.add([]*pb.TaskStats{{TaskId: "t", Name: "web.1", Gone: true}})
	if err := p.print(); err != nil || b.String() != "" {
		t.Fatalf("a gone task still shows: %v %q", err, b.String())
	}
	if _, err := newStatsPrinter("yaml", &b, false); err == nil || !strings.Contains(err.Error(), "table, json or a Go template") {
		t.Fatalf("--format yaml: %v", err)
	}
}
