package store

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
)

// replica is a task as the managers store it for a pending replica of a
// service: its spec, status, address and endpoint, about 390 bytes encoded.
func replica(svc, slot int, now time.Time) *berthv1.Task {
	ts := timestamppb.New(now)
	msg := "no suitable node (node drained on 1 node)"
	net := "9lg9relw0nwps8qdnt9w4qh99"
	return &berthv1.Task{
		Id: fmt.Sprintf("t%03d%021d", svc, slot), ServiceId: fmt.Sprintf("svc%022d", svc), Slot: uint64(slot),
		Meta: &berthv1.Meta{CreatedAt: ts, UpdatedAt: ts},
		Spec: &berthv1.TaskSpec{Container: &berthv1.ContainerSpec{Image: "registry.local/app:v1", Args: []string{"sleep", "1000"},
			Env: []string{fmt.Sprintf("SERVICE=%d", svc), "SETTING_1=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}},
			Resources: &berthv1.Resources{Limits: &berthv1.ResourceSet{}, Reservations: &berthv1.ResourceSet{}},
			Restart:   &berthv1.RestartPolicy{}, Placement: &berthv1.Placement{}},
		SpecVersion: 1, DesiredState: berthv1.TaskState_TASK_STATE_RUNNING,
		Status:       &berthv1.TaskStatus{State: berthv1.TaskState_TASK_STATE_PENDING, Timestamp: ts, Message: msg, Err: msg},
		Networks:     []*berthv1.NetworkAttachmentStatus{{NetworkId: net, Addresses: []string{fmt.Sprintf("10.0.%d.%d/16", slot/250, slot%250+2)}}},
		Endpoint:     &berthv1.Endpoint{Spec: &berthv1.EndpointSpec{}, VirtualIps: []*berthv1.VirtualIP{{NetworkId: net, Addr: fmt.Sprintf("10.0.255.%d/16", svc)}}},
		SpecNetworks: &berthv1.SpecNetworks{},
	}
}

// applyEncoded applies services×replicas tasks as the Raft backend does:
// each batch encoded, decoded, then applied, so no two tasks share memory
// on their way in.
func applyEncoded(t *testing.T, s *MemoryStore, services, replicas int) {
	t.Helper()
	now := time.Now()
	index := s.Index()
	for svc := range services {
		for start := 1; start <= replicas; start += 500 {
			b := &berthv1.StoreBatch{}
			for slot := start; slot < start+500 && slot <= replicas; slot++ {
				b.Actions = append(b.Actions, tasks.wrap(berthv1.StoreAction_KIND_CREATE, replica(svc, slot, now)))
			}
			raw, err := proto.Marshal(b)
			if err != nil {
				t.Fatal(err)
			}
			var d berthv1.StoreBatch
			if err := proto.Unmarshal(raw, &d); err != nil {
				t.Fatal(err)
			}
			index++
			if err := s.Apply(index, &d); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkShared: the tasks of one service share one spec, endpoint and
// service ID; those of two services do not share specs.
func checkShared(t *testing.T, s *MemoryStore, services int) {
	t.Helper()
	s.View(func(tx ReadTx) {
		var firstSpec *berthv1.TaskSpec
		for svc := range services {
			ts, err := tx.FindTasks(ByServiceID(fmt.Sprintf("svc%022d", svc)))
			if err != nil || len(ts) == 0 {
				t.Fatalf("tasks of service %d: %d, %v", svc, len(ts), err)
			}
			for _, task := range ts[1:] {
				if task.Spec != ts[0].Spec || task.Endpoint != ts[0].Endpoint || task.SpecNetworks != ts[0].SpecNetworks {
					t.Fatalf("task %s holds its own copy of its service's spec, endpoint or networks", task.Id)
				}
				if unsafe.StringData(task.ServiceId) != unsafe.StringData(ts[0].ServiceId) ||
					unsafe.StringData(task.Status.Message) != unsafe.StringData(ts[0].Status.Err) {
					t.Fatalf("task %s holds its own copy of its service ID or status message", task.Id)
				}
			}
			if svc == 0 {
				firstSpec = ts[0].Spec
			} else if ts[0].Spec == firstSpec {
				t.Fatalf("services 0 and %d share a spec; their specs differ", svc)
			}
			want := replica(svc, int(ts[0].Slot), ts[0].Meta.CreatedAt.AsTime())
			want.Meta.Version = ts[0].Meta.Version
			if !proto.Equal(ts[0], want) {
				t.Fatalf("task %s changed in the store:\n%v\nwant\n%v", ts[0].Id, ts[0], want)
			}
		}
	})
}

func TestTasksShareWhatTheyHoldEqual(t *testing.T) {
	s := New(nil)
	applyEncoded(t, s, 3, 1200)
	checkShared(t, s, 3)

	// A restarted manager reads its state back from a snapshot.
	var buf bytes.Buffer
	if _, err := s.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New(nil)
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	checkShared(t, r, 3)
}

// TestInternerLetsGoOfSpecs: once no stored task holds a spec, the
// interner holds nothing of it either.
func TestInternerLetsGoOfSpecs(t *testing.T) {
	s := New(nil)
	applyEncoded(t, s, 4, 10)
	if n := s.intern.specs.len(); n != 4 {
		t.Fatalf("%d specs pooled, want 4", n)
	}
	var all []*berthv1.Task
	s.View(func(tx ReadTx) { all, _ = tx.FindTasks(All) })
	ctx := t.Context()
	if err := s.Update(ctx, func(tx Tx) error {
		for _, task := range all {
			if err := tx.DeleteTask(task.Id); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	all = nil
	s.changes.reset(s.Index()) // the changelog holds the deleted tasks for watchers
	await.True(t, 10*time.Second, func() bool {
		runtime.GC()
		return s.intern.specs.len() == 0
	}, "pooled specs let go (%d left)", s.intern.specs.len())
}

// TestTaskMemory bounds what a stored task costs: 20k replicas of 20
// services, as the Raft backend applies them. 4.9 KB a task with six task
// indexes and every task's own copy of its spec; about 2 KB with two
// indexes and shared parts.
func TestTaskMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes what allocations cost")
	}
	const services, replicas, bound = 20, 1000, 2500
	s := New(nil)
	before := liveHeap()
	applyEncoded(t, s, services, replicas)
	s.changes.reset(s.Index()) // bounded on its own (WithChangelogSize); the state alone here
	perTask := float64(liveHeap()-before) / (services * replicas)
	t.Logf("%.0f bytes a task", perTask)
	if perTask > bound {
		t.Errorf("a stored task takes %.0f bytes, want at most %d", perTask, bound)
	}
	runtime.KeepAlive(s)
}

func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// TestRemovalLeavesStoredTasksAlone: a removal carries the stored object
// itself, which readers may hold; applying it writes nothing to it (run
// with -race).
func TestRemovalLeavesStoredTasksAlone(t *testing.T) {
	s := New(nil)
	applyEncoded(t, s, 1, 50)
	var stored []*berthv1.Task
	s.View(func(tx ReadTx) { stored, _ = tx.FindTasks(All) })
	done := make(chan int)
	go func() {
		n := 0
		for _, task := range stored {
			n += len(task.GetNodeId()) + len(task.GetServiceId()) + len(task.GetStatus().GetMessage())
			n += len(task.GetSpec().GetContainer().GetImage()) + len(task.GetMeta().GetUpdatedAt().String())
		}
		done <- n
	}()
	if err := s.Update(t.Context(), func(tx Tx) error {
		for _, task := range stored {
			if err := tx.DeleteTask(task.Id); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	<-done
}
