package allocator

import (
	"context"
	"fmt"
	"testing"
	"time"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// BenchmarkAllocateTasks is the time from a batch of new tasks landing in
// the store to every one of them having its address on the default
// network (the delay the allocator adds before scheduling).
func BenchmarkAllocateTasks(b *testing.B) {
	const n = 1000
	st := store.New(nil)
	ctx := context.Background()
	if err := st.Update(ctx, func(tx store.Tx) error {
		if err := tx.CreateCluster(&pb.Cluster{Id: clusterID}); err != nil {
			return err
		}
		return tx.CreateService(&pb.Service{Id: "svc", Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "svc"}}})
	}); err != nil {
		b.Fatal(err)
	}
	a, err := New(Config{Store: st, ClusterID: clusterID})
	if err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(rctx) }()
	defer func() { cancel(); <-done }()
	b.ResetTimer()
	for round := 0; round < b.N; round++ {
		ids := make([]string, n)
		err := st.Batch(ctx, func(bt *store.Batch) error {
			for i := range ids {
				tk := pendingTask("svc", round*n+i)
				ids[i] = tk.GetId()
				if err := bt.Update(func(tx store.Tx) error { return tx.CreateTask(tk) }); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		waitAll(b, st, ids)
		b.StopTimer()
		// Free the addresses so later rounds do not fill the /16.
		if err := st.Batch(ctx, func(bt *store.Batch) error {
			for _, id := range ids {
				if err := bt.Update(func(tx store.Tx) error { return tx.DeleteTask(id) }); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "tasks/s")
}

func waitAll(b *testing.B, st *store.MemoryStore, ids []string) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		left := 0
		st.View(func(tx store.ReadTx) {
			for _, id := range ids {
				if len(tx.GetTask(id).GetNetworks()) == 0 {
					left++
				}
			}
		})
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatal(fmt.Sprintf("%d of %d tasks unallocated after 30s", left, len(ids)))
		}
		time.Sleep(time.Millisecond)
	}
}
