package discovery

import (
	"slices"
	"testing"
	"time"
)

// BenchmarkDeadDetection measures, per trial, the time from an abrupt
// Shutdown of one of 5 members to the first Dead event any peer delivers.
// Run with -benchtime=10x for ten trials; reports the p50 and the max.
func BenchmarkDeadDetection(b *testing.B) {
	key := testKey(b)
	var trials []time.Duration
	for i := 0; i < b.N; i++ {
		trials = append(trials, detectOnce(b, key))
	}
	slices.Sort(trials)
	b.ReportMetric(float64(trials[len(trials)/2].Microseconds())/1000, "ms/detect")
	b.ReportMetric(float64(trials[len(trials)-1].Microseconds())/1000, "max-ms/detect")
	b.ReportMetric(0, "ns/op")
}

// detectOnce runs one trial on a fresh cluster.
func detectOnce(b *testing.B, key []byte) time.Duration {
	notify := make(chan Event, 64)
	ms := startCluster(b, 5, key, notify)
	victim := ms[4].g.NodeID()
	stopped := time.Now()
	if err := ms[4].g.Shutdown(); err != nil {
		b.Fatalf("shutdown: %v", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e := <-notify:
			if e.NodeID == victim && e.Kind == EventDead {
				d := e.At.Sub(stopped)
				for _, m := range ms[:4] {
					_ = m.g.Shutdown()
				}
				return d
			}
		case <-timeout:
			b.Fatalf("no peer saw %s dead within 10s", victim)
		}
	}
}
