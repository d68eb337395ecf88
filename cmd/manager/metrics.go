package main

import (
	"context"

	"berth/internal/metrics"
	"berth/manager"
	"berth/manager/telemetry"
)

// managerMetrics hooks a manager's counters into cfg when --metrics-addr
// is given (ep not nil): heartbeats through the dispatcher, commit
// latency and leader changes through Raft. It returns the metrics, nil
// when off.
func managerMetrics(ep *metrics.Endpoint, cfg *manager.Config) *telemetry.Metrics {
	if ep == nil {
		return nil
	}
	tm := telemetry.New(ep.Registry)
	cfg.OnHeartbeat = tm.Heartbeat
	cfg.Raft.OnCommit = tm.RaftCommit
	cfg.Raft.OnLeaderChange = tm.LeaderChange
	return tm
}

// watchStore counts tasks and nodes from the manager's store once it
// serves, and times tasks' scheduling and start, until ctx ends.
func watchStore(ctx context.Context, ep *metrics.Endpoint, tm *telemetry.Metrics, m *manager.Manager) error {
	if tm == nil {
		return nil
	}
	select {
	case <-m.Ready():
	case <-ctx.Done():
		return nil
	}
	return tm.Watch(ctx, ep.Registry, m.Raft().Store())
}
