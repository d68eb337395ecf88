package main

import (
	"io"
	"strings"
	"testing"
)

// BenchmarkLists100k times each list command of the CLI, run whole (TLS
// dial included) against the real Control API over a store of 100k tasks:
// 100 services of 1,000 replicas on 100 nodes (issue #17's aim: under
// 100 ms each). It first checks every list command's answers at that size
// (as TestListsAtScale does at 10k), then reports ms per command.
func BenchmarkLists100k(b *testing.B) {
	shape := scaleShape{services: 100, replicas: 1000, nodes: 100}
	dir := startListCluster(b, shape)
	checkLists(b, dir, shape) // the right answers first, none over the limit
	b.ResetTimer()
	for _, args := range [][]string{
		{"service", "ls"},
		{"service", "ls", "-q"},
		{"service", "ps", "svc-042"},
		{"service", "ps", "--filter", "desired-state=running", "--filter", "node=host-007", "svc-042"},
		{"node", "ls"},
		{"network", "ls"},
		{"secret", "ls"},
	} {
		b.Run(strings.Join(args, "_"), func(b *testing.B) {
			for b.Loop() {
				root := newRootCmd()
				root.SetOut(io.Discard)
				root.SetErr(io.Discard)
				root.SetArgs(append([]string{"--tls-dir", dir}, args...))
				if err := root.Execute(); err != nil {
					b.Fatalf("berth %v: %v", args, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/cmd")
		})
	}
}
