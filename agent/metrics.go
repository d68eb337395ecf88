package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"berth/agent/image"
	"berth/agent/runtime"
	"berth/internal/metrics"
)

// meteredExecutor counts and times the container starts and image pulls
// of the Executor it wraps, for the agent's /metrics.
type meteredExecutor struct {
	Executor
	starts, pulls       *prometheus.CounterVec
	startTime, pullTime prometheus.Histogram
}

// meter wraps e to count into reg; with no registry it returns e.
func meter(e Executor, reg prometheus.Registerer) Executor {
	if reg == nil {
		return e
	}
	m := &meteredExecutor{
		Executor: e,
		starts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: "agent", Name: "container_starts_total",
			Help: "Containers this agent started, by result (ok, error).",
		}, []string{"result"}),
		startTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: "agent", Name: "container_start_duration_seconds",
			Help:    "Time to start a container: namespaces, cgroup, mounts, init, up to the user's process running.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metrics.Namespace, Subsystem: "agent", Name: "image_pulls_total",
			Help: "Image pulls this agent made (layers already present cost nothing), by result (ok, error).",
		}, []string{"result"}),
		pullTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: metrics.Namespace, Subsystem: "agent", Name: "image_pull_duration_seconds",
			Help:    "Time to pull an image, unpacking included.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}),
	}
	for _, r := range []string{"ok", "error"} { // both show from the start, at 0
		m.starts.WithLabelValues(r)
		m.pulls.WithLabelValues(r)
	}
	reg.MustRegister(m.starts, m.startTime, m.pulls, m.pullTime)
	return m
}

func result(err error) string {
	if err != nil {
		return "error"
	}
	return "ok"
}

// Pull pulls through the wrapped executor, counting and timing it.
func (m *meteredExecutor) Pull(ctx context.Context, ref string, progress func(image.Progress), opts ...image.PullOption) (image.Image, error) {
	start := time.Now()
	img, err := m.Executor.Pull(ctx, ref, progress, opts...)
	m.pulls.WithLabelValues(result(err)).Inc()
	if err == nil {
		m.pullTime.Observe(time.Since(start).Seconds())
	}
	return img, err
}

// Run starts a container through the wrapped executor, counting and timing it.
func (m *meteredExecutor) Run(ctx context.Context, spec runtime.Spec) (Container, error) {
	start := time.Now()
	c, err := m.Executor.Run(ctx, spec)
	m.starts.WithLabelValues(result(err)).Inc()
	if err == nil {
		m.startTime.Observe(time.Since(start).Seconds())
	}
	return c, err
}
