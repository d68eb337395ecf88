package allocator

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

const (
	clusterID = "c1"
	wait      = 5 * time.Second
)

func newStore(t *testing.T) *store.MemoryStore {
	t.Helper()
	st := store.New(nil)
	update(t, st, func(tx store.Tx) error {
		return tx.CreateCluster(&pb.Cluster{Id: clusterID, Spec: &pb.ClusterSpec{AddressPool: "10.0.0.0/8", AddressPoolMaskLen: 24}})
	})
	return st
}

func update(t *testing.T, st *store.MemoryStore, cb func(store.Tx) error) {
	t.Helper()
	if err := st.Update(context.Background(), cb); err != nil {
		t.Fatal(err)
	}
}

// start runs an allocator on st until the test ends, or stop is called.
func start(t *testing.T, st *store.MemoryStore) (stop func()) {
	t.Helper()
	a, err := New(Config{Store: st, ClusterID: clusterID})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := a.Run(ctx); err != nil {
			t.Errorf("allocator: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

func network(t *testing.T, st *store.MemoryStore, name, subnet string) *pb.Network {
	t.Helper()
	n := &pb.Network{Id: "net-" + name, Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: name}, Subnet: subnet, Driver: "overlay"}}
	update(t, st, func(tx store.Tx) error { return CreateNetwork(tx, clusterID, n) })
	return n
}

func service(id string, nets ...string) *pb.Service {
	s := &pb.Service{Id: id, Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: id}}}
	for _, n := range nets {
		s.Spec.Networks = append(s.Spec.Networks, &pb.NetworkAttachment{Target: n, Aliases: []string{id + "-alias"}})
	}
	return s
}

func pendingTask(svc string, slot int) *pb.Task {
	return &pb.Task{Id: fmt.Sprintf("%s.%d", svc, slot), ServiceId: svc, Slot: uint64(slot),
		DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Status:       &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING, Message: pendingMessage}}
}

func create(t *testing.T, st *store.MemoryStore, objs ...proto.Message) {
	t.Helper()
	update(t, st, func(tx store.Tx) error {
		for _, o := range objs {
			var err error
			switch o := o.(type) {
			case *pb.Service:
				err = tx.CreateService(o)
			case *pb.Task:
				err = tx.CreateTask(o)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func getTask(st *store.MemoryStore, id string) (t *pb.Task) {
	st.View(func(tx store.ReadTx) { t = tx.GetTask(id) })
	return t
}

func getService(st *store.MemoryStore, id string) (s *pb.Service) {
	st.View(func(tx store.ReadTx) { s = tx.GetService(id) })
	return s
}

// waitAllocated waits until the tasks have their addresses and returns them.
func waitAllocated(t *testing.T, st *store.MemoryStore, ids ...string) map[string]*pb.Task {
	t.Helper()
	out := map[string]*pb.Task{}
	await.True(t, wait, func() bool {
		for _, id := range ids {
			tk := getTask(st, id)
			if len(tk.GetNetworks()) == 0 {
				return false
			}
			out[id] = tk
		}
		return true
	}, "tasks %v not allocated", ids)
	return out
}

// setState moves a task's observed state, as an agent report would.
func setState(t *testing.T, st *store.MemoryStore, id string, s pb.TaskState) {
	t.Helper()
	update(t, st, func(tx store.Tx) error {
		tk := proto.Clone(tx.GetTask(id)).(*pb.Task)
		tk.Status = &pb.TaskStatus{State: s}
		return tx.UpdateTask(tk)
	})
}

// checkUnique fails when two live holders (tasks not ended, services)
// share an address on one network.
func checkUnique(t *testing.T, st *store.MemoryStore) {
	t.Helper()
	seen := map[string]string{}
	claim := func(owner, netID, addr string) {
		p := netip.MustParsePrefix(addr)
		key := netID + "/" + p.Addr().String()
		if other, ok := seen[key]; ok {
			t.Errorf("address %s on %s held by %s and %s", p.Addr(), netID, other, owner)
		}
		seen[key] = owner
	}
	st.View(func(tx store.ReadTx) {
		svcs, _ := tx.FindServices(store.All)
		for _, s := range svcs {
			for _, v := range s.GetEndpoint().GetVirtualIps() {
				claim(s.GetId(), v.GetNetworkId(), v.GetAddr())
			}
		}
		tasks, _ := tx.FindTasks(store.All)
		for _, tk := range tasks {
			if released(tk) {
				continue
			}
			for _, a := range tk.GetNetworks() {
				for _, addr := range a.GetAddresses() {
					claim(tk.GetId(), a.GetNetworkId(), addr)
				}
			}
		}
	})
}
