package telemetry

import (
	"context"

	"berth/manager"
)

// Instrument hooks m's counters into a manager's config: heartbeats
// through the dispatcher, commit latency and leader changes through Raft.
// With nil metrics it changes nothing.
func (m *Metrics) Instrument(cfg *manager.Config) {
	if m == nil {
		return
	}
	cfg.OnHeartbeat = m.Heartbeat
	cfg.Raft.OnCommit = m.RaftCommit
	cfg.Raft.OnLeaderChange = m.LeaderChange
}

// Follow waits for mgr to serve, then counts from its store (Watch) until
// ctx ends. With nil metrics it returns at once.
func (m *Metrics) Follow(ctx context.Context, mgr *manager.Manager) error {
	if m == nil {
		return nil
	}
	select {
	case <-mgr.Ready():
	case <-ctx.Done():
		return nil
	}
	return m.Watch(ctx, mgr.Store())
}
