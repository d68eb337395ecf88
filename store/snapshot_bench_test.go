package store

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	berthv1 "berth/proto/berth/v1"
)

// BenchmarkRestore100k restores a snapshot of 100k tasks of ~0.6 KB (a
// restarting manager's first step); s/restore is the figure.
func BenchmarkRestore100k(b *testing.B) {
	s := New(nil)
	env := make([]string, 8)
	for i := range env {
		env[i] = fmt.Sprintf("SETTING_%d=%056d", i, i)
	}
	spec := &berthv1.TaskSpec{Container: &berthv1.ContainerSpec{Image: "registry.local/app:v1", Env: env}}
	err := s.Batch(context.Background(), func(bt *Batch) error {
		for i := range 100_000 {
			t := &berthv1.Task{Id: fmt.Sprintf("t%06d", i), ServiceId: fmt.Sprint("svc-", i%100), Slot: uint64(i%1000 + 1),
				NodeId: fmt.Sprint("node-", i%100), Spec: spec, DesiredState: berthv1.TaskState_TASK_STATE_RUNNING,
				Status: &berthv1.TaskStatus{State: berthv1.TaskState_TASK_STATE_RUNNING, Message: "started"}}
			if err := bt.Update(func(tx Tx) error { return tx.CreateTask(t) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(buf.Len()))
	for b.Loop() {
		if err := New(nil).Restore(bytes.NewReader(buf.Bytes())); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/restore")
}
