// Package telemetry counts what a manager does, for its /metrics endpoint
// (internal/metrics serves it): tasks and nodes by state, read from the
// store when scraped; how long tasks take to be scheduled and to run,
// from the store's task changes; Raft commit latency and leader changes;
// agents' heartbeats.
//
// It registers with the registry it is given, never a global one, and
// changes nothing: it reads the store and is called by the parts it
// counts (raftstore's and the dispatcher's hooks).
package telemetry

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"berth/internal/metrics"
)

// latencyBuckets span a local scheduling decision (ms) to a slow image
// pull before a task runs (minutes).
var latencyBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// Metrics are one manager's metrics. A nil *Metrics counts nothing, so
// that parts can call it whether metrics are on or not.
type Metrics struct {
	heartbeats    prometheus.Counter
	raftCommit    prometheus.Histogram
	leaderChanges prometheus.Counter
	scheduling    prometheus.Histogram
	convergence   prometheus.Histogram
	state         *stateCollector
}

// New registers a manager's metrics with reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: "dispatcher", Name: "heartbeats_total",
			Help: "Heartbeats received from agents by this manager.",
		}),
		raftCommit: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: "raft", Name: "commit_duration_seconds",
			Help: "Time from proposing a store write on this manager, as leader, to its commit and apply.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		leaderChanges: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: "raft", Name: "leader_changes_total",
			Help: "Changes of the Raft leader (including to none) this manager observed.",
		}),
		scheduling: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: "scheduler", Name: "scheduling_latency_seconds",
			Help: "Time from a task's creation to its assignment to a node.", Buckets: latencyBuckets,
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: "tasks", Name: "convergence_latency_seconds",
			Help: "Time from a task's creation to its container running.", Buckets: latencyBuckets,
		}),
		state: newStateCollector(),
	}
	reg.MustRegister(m.heartbeats, m.raftCommit, m.leaderChanges, m.scheduling, m.convergence, m.state)
	return m
}

// Heartbeat counts one agent heartbeat (dispatcher.Config.OnHeartbeat).
func (m *Metrics) Heartbeat() {
	if m != nil {
		m.heartbeats.Inc()
	}
}

// RaftCommit records one write's commit latency (raftstore.Config.OnCommit).
func (m *Metrics) RaftCommit(d time.Duration) {
	if m != nil {
		m.raftCommit.Observe(d.Seconds())
	}
}

// LeaderChange counts a change of the Raft leader
// (raftstore.Config.OnLeaderChange).
func (m *Metrics) LeaderChange(string) {
	if m != nil {
		m.leaderChanges.Inc()
	}
}
