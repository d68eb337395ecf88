package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	berthv1 "berth/proto/berth/v1"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

// fakeClock returns a clock that advances one second per call.
func fakeClock() func() time.Time {
	n := 0
	return func() time.Time { n++; return t0.Add(time.Duration(n) * time.Second) }
}

func service(id, name string) *berthv1.Service {
	return &berthv1.Service{Id: id, Spec: &berthv1.ServiceSpec{Annotations: &berthv1.Annotations{Name: name}}}
}

func task(id, svc string, slot uint64, node string, desired berthv1.TaskState) *berthv1.Task {
	return &berthv1.Task{Id: id, ServiceId: svc, Slot: slot, NodeId: node, DesiredState: desired}
}

func mustUpdate(t *testing.T, s *MemoryStore, cb func(Tx) error) {
	t.Helper()
	if err := s.Update(context.Background(), cb); err != nil {
		t.Fatalf("update: %v", err)
	}
}

func ids[T object](objs []T) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetId()
	}
	return out
}

func TestFindByIndexes(t *testing.T) {
	s := New(nil)
	running := berthv1.TaskState_TASK_STATE_RUNNING
	shutdown := berthv1.TaskState_TASK_STATE_SHUTDOWN
	mustUpdate(t, s, func(tx Tx) error {
		for _, o := range []error{
			tx.CreateService(service("svc1", "Web")),
			tx.CreateService(service("svc2", "db")),
			tx.CreateTask(task("t1", "svc1", 1, "n1", running)),
			tx.CreateTask(task("t2", "svc1", 2, "n2", running)),
			tx.CreateTask(task("t3", "svc1", 1, "n1", shutdown)),
			tx.CreateTask(task("t4", "svc2", 0, "n1", running)),
			tx.CreateTask(task("t5", "svc2", 0, "", running)),
			tx.CreateNode(&berthv1.Node{Id: "n1", Role: berthv1.NodeSpec_ROLE_MANAGER, Description: &berthv1.NodeDescription{Hostname: "Alpha"}}),
			tx.CreateNode(&berthv1.Node{Id: "n2", Description: &berthv1.NodeDescription{Hostname: "beta"}}),
			tx.CreateNetwork(&berthv1.Network{Id: "net1", Spec: &berthv1.NetworkSpec{Annotations: &berthv1.Annotations{Name: "front"}}}),
			tx.CreateSecret(&berthv1.Secret{Id: "sec1", Spec: &berthv1.SecretSpec{Annotations: &berthv1.Annotations{Name: "pw"}}}),
			tx.CreateCluster(&berthv1.Cluster{Id: "c1", Spec: &berthv1.ClusterSpec{Annotations: &berthv1.Annotations{Name: "default"}}}),
		} {
			if o != nil {
				return o
			}
		}
		return nil
	})
	cases := []struct {
		name string
		find func(ReadTx) ([]string, error)
		want string
	}{
		{"service by name ignores case", func(tx ReadTx) ([]string, error) { r, err := tx.FindServices(ByName("web")); return ids(r), err }, "[svc1]"},
		{"service by name prefix", func(tx ReadTx) ([]string, error) { r, err := tx.FindServices(ByNamePrefix("D")); return ids(r), err }, "[svc2]"},
		{"all services", func(tx ReadTx) ([]string, error) { r, err := tx.FindServices(All); return ids(r), err }, "[svc1 svc2]"},
		{"service by ID prefix", func(tx ReadTx) ([]string, error) { r, err := tx.FindServices(ByIDPrefix("svc")); return ids(r), err }, "[svc1 svc2]"},
		{"tasks by service, in slot order", func(tx ReadTx) ([]string, error) { r, err := tx.FindTasks(ByServiceID("svc1")); return ids(r), err }, "[t1 t3 t2]"},
		{"tasks by node", func(tx ReadTx) ([]string, error) { r, err := tx.FindTasks(ByNodeID("n1")); return ids(r), err }, "[t1 t3 t4]"},
		{"unassigned tasks", func(tx ReadTx) ([]string, error) { r, err := tx.FindTasks(ByNodeID("")); return ids(r), err }, "[t5]"},
		{"tasks by desired state", func(tx ReadTx) ([]string, error) {
			r, err := tx.FindTasks(ByDesiredState(shutdown))
			return ids(r), err
		}, "[t3]"},
		{"tasks by slot", func(tx ReadTx) ([]string, error) { r, err := tx.FindTasks(BySlot("svc1", 1)); return ids(r), err }, "[t1 t3]"},
		{"tasks by service and node", func(tx ReadTx) ([]string, error) {
			r, err := tx.FindTasks(ByServiceNode("svc2", "n1"))
			return ids(r), err
		}, "[t4]"},
		{"global tasks by slot 0", func(tx ReadTx) ([]string, error) { r, err := tx.FindTasks(BySlot("svc2", 0)); return ids(r), err }, "[t5 t4]"},
		{"no global task of a replicated service on a node", func(tx ReadTx) ([]string, error) {
			r, err := tx.FindTasks(ByServiceNode("svc1", "n1"))
			return ids(r), err
		}, "[]"},
		{"a service ID that prefixes another selects only its own", func(tx ReadTx) ([]string, error) {
			r, err := tx.FindTasks(ByServiceID("svc"))
			return ids(r), err
		}, "[]"},
		{"nodes by role", func(tx ReadTx) ([]string, error) {
			r, err := tx.FindNodes(ByRole(berthv1.NodeSpec_ROLE_MANAGER))
			return ids(r), err
		}, "[n1]"},
		{"nodes by hostname", func(tx ReadTx) ([]string, error) { r, err := tx.FindNodes(ByHostname("ALPHA")); return ids(r), err }, "[n1]"},
		{"nodes by name falls back to hostname", func(tx ReadTx) ([]string, error) { r, err := tx.FindNodes(ByName("beta")); return ids(r), err }, "[n2]"},
		{"network by name", func(tx ReadTx) ([]string, error) { r, err := tx.FindNetworks(ByName("front")); return ids(r), err }, "[net1]"},
		{"secret by name", func(tx ReadTx) ([]string, error) { r, err := tx.FindSecrets(ByName("pw")); return ids(r), err }, "[sec1]"},
		{"cluster by name", func(tx ReadTx) ([]string, error) { r, err := tx.FindClusters(ByName("default")); return ids(r), err }, "[c1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s.View(func(tx ReadTx) {
				got, err := c.find(tx)
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(got) != c.want {
					t.Errorf("got %v, want %s", got, c.want)
				}
			})
		})
	}
	s.View(func(tx ReadTx) {
		if _, err := tx.FindServices(ByNodeID("n1")); !errors.Is(err, ErrInvalidFindBy) {
			t.Errorf("services by node: err %v, want ErrInvalidFindBy", err)
		}
		if _, err := tx.FindNodes(ByDesiredState(running)); !errors.Is(err, ErrInvalidFindBy) {
			t.Errorf("nodes by desired state: err %v, want ErrInvalidFindBy", err)
		}
	})
}

func TestWriteErrors(t *testing.T) {
	s := New(nil)
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateService(service("a", "web")) })
	var stale *berthv1.Service
	s.View(func(tx ReadTx) { stale = tx.GetService("a") })
	fresh := proto.Clone(stale).(*berthv1.Service)
	fresh.SpecVersion = 2
	mustUpdate(t, s, func(tx Tx) error { return tx.UpdateService(fresh) })

	cases := []struct {
		name string
		cb   func(Tx) error
		want error
	}{
		{"duplicate ID", func(tx Tx) error { return tx.CreateService(service("a", "other")) }, ErrExist},
		{"duplicate name, other case", func(tx Tx) error { return tx.CreateService(service("b", "WEB")) }, ErrNameConflict},
		{"stale version", func(tx Tx) error { return tx.UpdateService(stale) }, ErrSequenceConflict},
		{"update missing", func(tx Tx) error { return tx.UpdateService(service("zz", "x")) }, ErrNotFound},
		{"delete missing", func(tx Tx) error { return tx.DeleteTask("zz") }, ErrNotFound},
		{"empty ID", func(tx Tx) error { return tx.CreateTask(&berthv1.Task{}) }, ErrInvalidObject},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := s.Index()
			err := s.Update(context.Background(), func(tx Tx) error {
				if err := tx.CreateTask(task("side-effect", "a", 1, "", 0)); err != nil {
					return err
				}
				return c.cb(tx)
			})
			if !errors.Is(err, c.want) {
				t.Fatalf("err %v, want %v", err, c.want)
			}
			s.View(func(tx ReadTx) {
				if tx.GetTask("side-effect") != nil || s.Index() != before {
					t.Errorf("a failed transaction wrote something")
				}
			})
		})
	}
}

func TestMetaAndImmutability(t *testing.T) {
	s := New(nil, WithClock(fakeClock()))
	in := service("a", "web")
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateService(in) })
	in.Spec.Annotations.Name = "changed-after-write"

	var got *berthv1.Service
	s.View(func(tx ReadTx) { got = tx.GetService("a") })
	if got.GetSpec().GetAnnotations().GetName() != "web" {
		t.Fatalf("changing the written object changed the store: %v", got)
	}
	if got.Meta.Version != 1 || !got.Meta.CreatedAt.AsTime().Equal(t0.Add(time.Second)) {
		t.Fatalf("meta after create = %v, want version 1, created at t0+1s", got.Meta)
	}
	upd := proto.Clone(got).(*berthv1.Service)
	upd.SpecVersion = 7
	mustUpdate(t, s, func(tx Tx) error { return tx.UpdateService(upd) })
	upd.SpecVersion = 8 // must not reach the store
	s.View(func(tx ReadTx) {
		cur := tx.GetService("a")
		if cur.SpecVersion != 7 || cur.Meta.Version != 2 {
			t.Fatalf("after update: spec version %d, meta %v", cur.SpecVersion, cur.Meta)
		}
		if !cur.Meta.CreatedAt.AsTime().Equal(got.Meta.CreatedAt.AsTime()) || !cur.Meta.UpdatedAt.AsTime().After(cur.Meta.CreatedAt.AsTime()) {
			t.Fatalf("timestamps after update: %v", cur.Meta)
		}
	})
	if got.SpecVersion != 0 {
		t.Fatalf("an object read before the update changed: %v", got)
	}
}

func TestTxReadsOwnWritesAndFolds(t *testing.T) {
	s := New(nil)
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateTask(task("old", "s", 1, "", 0)) })
	var seen []Event
	w, err := s.Watch(context.Background(), s.Index())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	mustUpdate(t, s, func(tx Tx) error {
		if err := tx.CreateTask(task("new", "s", 2, "", 0)); err != nil {
			return err
		}
		n := proto.Clone(tx.GetTask("new")).(*berthv1.Task)
		n.NodeId = "n1"
		if err := tx.UpdateTask(n); err != nil {
			return err
		}
		if err := tx.CreateTask(task("tmp", "s", 3, "", 0)); err != nil {
			return err
		}
		if err := tx.DeleteTask("tmp"); err != nil {
			return err
		}
		o := proto.Clone(tx.GetTask("old")).(*berthv1.Task)
		o.NodeId = "n2"
		if err := tx.UpdateTask(o); err != nil {
			return err
		}
		o = proto.Clone(tx.GetTask("old")).(*berthv1.Task)
		o.NodeId = "n3"
		if err := tx.UpdateTask(o); err != nil {
			return err
		}
		if got, _ := tx.FindTasks(ByNodeID("n1")); len(got) != 1 {
			return fmt.Errorf("index in tx: %d tasks on n1", len(got))
		}
		return nil
	})
	for len(seen) < 2 {
		seen = append(seen, <-w.Events())
	}
	want := "[create new n1 update old n3]"
	var got []any
	for _, e := range seen {
		got = append(got, e.Kind.String(), e.Object.(*berthv1.Task).Id, e.Object.(*berthv1.Task).NodeId)
	}
	if fmt.Sprint(got) != want {
		t.Fatalf("events %v, want %s", got, want)
	}
}

func TestBatchSplitsAndRollsBackOneCallback(t *testing.T) {
	probe := New(nil)
	if err := probe.Update(context.Background(), func(tx Tx) error { return tx.CreateTask(task("t0000", "s", 0, "", 0)) }); err != nil {
		t.Fatal(err)
	}
	var one int // bytes of one task as the batch counts them: with its meta
	probe.View(func(tx ReadTx) { one = proto.Size(tx.GetTask("t0000")) })
	s := New(nil, WithMaxBatchBytes(100*one))
	start := s.Index()
	err := s.Batch(context.Background(), func(b *Batch) error {
		for i := range 1000 {
			if err := b.Update(func(tx Tx) error { return tx.CreateTask(task(fmt.Sprintf("t%04d", i), "s", uint64(i), "", 0)) }); err != nil {
				return err
			}
		}
		err := b.Update(func(tx Tx) error {
			if err := tx.CreateTask(task("rolled-back", "s", 0, "", 0)); err != nil {
				return err
			}
			return tx.CreateTask(task("t0001", "s", 0, "", 0)) // exists
		})
		if !errors.Is(err, ErrExist) {
			return fmt.Errorf("failing callback: %v, want ErrExist", err)
		}
		return b.Update(func(tx Tx) error { return tx.CreateTask(task("last", "s", 0, "", 0)) })
	})
	if err != nil {
		t.Fatal(err)
	}
	s.View(func(tx ReadTx) {
		all, _ := tx.FindTasks(All)
		if len(all) != 1001 || tx.GetTask("rolled-back") != nil || tx.GetTask("last") == nil {
			t.Fatalf("%d tasks, rolled-back present %v", len(all), tx.GetTask("rolled-back") != nil)
		}
	})
	if entries := s.Index() - start; entries < 9 || entries > 12 {
		t.Fatalf("batch of 1001 creates took %d entries, want about 11 (about 100 per entry)", entries)
	}
}

// proposer is a fake Proposer that applies batches with its own indexes
// after a round-trip through the wire format, as a Raft log would.
type proposer struct {
	s     *MemoryStore
	index uint64
	err   error
}

func (p *proposer) Propose(_ context.Context, b *berthv1.StoreBatch) (uint64, error) {
	if p.err != nil {
		return 0, p.err
	}
	raw, err := proto.Marshal(b)
	if err != nil {
		return 0, err
	}
	var dec berthv1.StoreBatch
	if err := proto.Unmarshal(raw, &dec); err != nil {
		return 0, err
	}
	p.index += 10
	return p.index, p.s.Apply(p.index, &dec)
}

func TestUpdateGoesThroughProposer(t *testing.T) {
	p := &proposer{}
	s := New(p)
	p.s = s
	mustUpdate(t, s, func(tx Tx) error { return tx.CreateService(service("a", "web")) })
	s.View(func(tx ReadTx) {
		if v := tx.GetService("a").GetMeta().GetVersion(); v != 10 || tx.Index() != 10 {
			t.Fatalf("version %d index %d, want the log index 10", v, tx.Index())
		}
	})
	p.err = fmt.Errorf("propose: %w", ErrNotLeader)
	err := s.Update(context.Background(), func(tx Tx) error { return tx.DeleteService("a") })
	if !errors.Is(err, ErrNotLeader) {
		t.Fatalf("err %v, want ErrNotLeader", err)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	s := New(nil)
	mustUpdate(t, s, func(tx Tx) error {
		for i := range 50 {
			if err := tx.CreateTask(task(fmt.Sprint("t", i), "svc", uint64(i), "n1", 0)); err != nil {
				return err
			}
		}
		return tx.CreateCluster(&berthv1.Cluster{Id: "c", Meta: &berthv1.Meta{CreatedAt: timestamppb.New(t0)}})
	})
	var buf bytes.Buffer
	snap := s.Snapshot()
	mustUpdate(t, s, func(tx Tx) error { return tx.DeleteTask("t1") }) // after the capture
	if _, err := snap.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	r := New(nil)
	w, err := r.Watch(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if _, open := <-w.Events(); open || !errors.Is(w.Err(), ErrRestored) {
		t.Fatalf("watcher across a restore: err %v, want ErrRestored", w.Err())
	}
	r.View(func(tx ReadTx) {
		got, _ := tx.FindTasks(ByNodeID("n1"))
		if len(got) != 50 || tx.Index() != snap.Index() || tx.GetTask("t1") == nil || tx.GetCluster("c") == nil {
			t.Fatalf("restored %d tasks at index %d, want 50 at %d", len(got), tx.Index(), snap.Index())
		}
	})
	if err := r.Restore(bytes.NewReader([]byte("garbage!garbage!"))); err == nil {
		t.Fatal("restore of garbage succeeded")
	}
}
