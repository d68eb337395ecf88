package telemetry

import (
	"context"
	"fmt"
	"time"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// Watch counts tasks and nodes by state from st when scraped, and
// follows task changes to time scheduling and convergence, until ctx
// ends. Only changes seen while it runs count, so a manager that starts
// counts no task twice and none it did not see move.
func (m *Metrics) Watch(ctx context.Context, st *store.MemoryStore) error {
	w, err := watchTasks(ctx, st)
	if err != nil {
		return err
	}
	m.state.st.Store(st)
	defer m.state.st.Store(nil)
	for {
		for e := range w.Events() {
			m.observe(e)
		}
		w.Close() // ended by ctx, or fell behind: watch again from now
		if ctx.Err() != nil {
			return nil
		}
		if w, err = watchTasks(ctx, st); err != nil {
			return err
		}
	}
}

func watchTasks(ctx context.Context, st *store.MemoryStore) (*store.Watcher, error) {
	w, err := st.ViewAndWatch(ctx, func(store.ReadTx) {}, store.Only[*pb.Task]())
	if err != nil {
		return nil, fmt.Errorf("watch tasks for metrics: %w", err)
	}
	return w, nil
}

// observe times a task that has just been assigned, or has just started
// running, from its creation.
func (m *Metrics) observe(e store.Event) {
	t, ok := e.Object.(*pb.Task)
	if !ok || e.Kind == store.EventDelete || t.GetSpec().GetAttachment() != nil {
		return // attachments are never scheduled nor run a container
	}
	var was pb.TaskState
	if old, ok := e.Old.(*pb.Task); ok {
		was = old.GetStatus().GetState()
	}
	now := t.GetStatus().GetState()
	since := since(t, e.Time)
	if since < 0 {
		return
	}
	if was < pb.TaskState_TASK_STATE_ASSIGNED && now >= pb.TaskState_TASK_STATE_ASSIGNED && now <= pb.TaskState_TASK_STATE_RUNNING {
		m.scheduling.Observe(since.Seconds())
	}
	if was < pb.TaskState_TASK_STATE_RUNNING && now == pb.TaskState_TASK_STATE_RUNNING {
		m.convergence.Observe(since.Seconds())
	}
}

// since is the time from a task's creation to its last status change
// (or to when the store applied it, for a status with no time).
func since(t *pb.Task, applied time.Time) time.Duration {
	created := t.GetMeta().GetCreatedAt()
	if created == nil {
		return -1
	}
	at := applied
	if ts := t.GetStatus().GetTimestamp(); ts != nil {
		at = ts.AsTime()
	}
	return at.Sub(created.AsTime())
}
