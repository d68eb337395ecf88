package allocator

import (
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"berth/overlay/ipam"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// needsAddresses reports whether t waits for the allocator: it is pending,
// managers want it running, and it has no network attachment yet. The
// assign loop places only tasks that have one (every task joins at least
// the default network), so this is the hand-over between the two loops.
func needsAddresses(t *pb.Task) bool {
	return t.GetStatus().GetState() == pb.TaskState_TASK_STATE_PENDING &&
		t.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING &&
		len(t.GetNetworks()) == 0
}

// released reports whether t no longer holds its addresses: its container
// ended (or never will run), so nothing on any node answers on them.
func released(t *pb.Task) bool {
	s := t.GetStatus().GetState()
	return s > pb.TaskState_TASK_STATE_RUNNING ||
		(t.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING && s < pb.TaskState_TASK_STATE_ASSIGNED)
}

// state is the loop's copy of what allocation reads, and the in-memory
// IPAM rebuilt from the store. Addresses are owned by a task ID (a task's
// address) or a service ID (its VIP); each owner holds at most one address
// per network.
type state struct {
	log       *slog.Logger
	nets      map[string]*ipam.Subnet // by network ID
	networks  map[string]*pb.Network  // by network ID
	defaultID string                  // the default network's ID, "" while it is missing
	services  map[string]*pb.Service  // by service ID
	held      map[string]holdings     // by owner
	waiting   map[string]*pb.Task     // tasks that need addresses, by ID
	cluster   bool                    // the Cluster object exists
}

func newState(log *slog.Logger) *state {
	return &state{log: log, nets: map[string]*ipam.Subnet{}, networks: map[string]*pb.Network{},
		services: map[string]*pb.Service{}, held: map[string]holdings{}, waiting: map[string]*pb.Task{}}
}

// load rebuilds s from a store view: every address a live task or a
// service holds is reserved, so none is given twice across leader changes
// and restarts.
func (s *state) load(tx store.ReadTx) error {
	clusters, err := tx.FindClusters(store.All)
	if err != nil {
		return fmt.Errorf("read clusters: %w", err)
	}
	s.cluster = len(clusters) > 0
	nets, err := tx.FindNetworks(store.All)
	if err != nil {
		return fmt.Errorf("read networks: %w", err)
	}
	for _, n := range nets {
		s.putNetwork(n)
	}
	svcs, err := tx.FindServices(store.All)
	if err != nil {
		return fmt.Errorf("read services: %w", err)
	}
	for _, svc := range svcs {
		s.services[svc.GetId()] = svc
		for _, v := range svc.GetEndpoint().GetVirtualIps() {
			s.reserve(svc.GetId(), v.GetNetworkId(), v.GetAddr())
		}
	}
	tasks, err := tx.FindTasks(store.All)
	if err != nil {
		return fmt.Errorf("read tasks: %w", err)
	}
	for _, t := range tasks {
		if released(t) {
			continue
		}
		for _, a := range t.GetNetworks() {
			for _, addr := range a.GetAddresses() {
				s.reserve(t.GetId(), a.GetNetworkId(), addr)
			}
		}
		if needsAddresses(t) {
			s.waiting[t.GetId()] = t
		}
	}
	return nil
}

// reserve records an address read from the store. A conflict means the
// store holds one address twice: it is logged loudly, not repaired.
func (s *state) reserve(owner, netID, addr string) {
	sub := s.nets[netID]
	p, err := netip.ParsePrefix(addr)
	if sub == nil || err != nil {
		return // the network is gone, or the address is not ours to track
	}
	if err := sub.Reserve(p.Addr(), owner); err != nil {
		s.log.Error("address held twice in the store", "network", netID, "owner", owner, "err", err)
		return
	}
	s.hold(owner, netID, p)
}

func (s *state) hold(owner, netID string, p netip.Prefix) {
	s.held[owner] = s.held[owner].set(netID, p)
}

// release frees what owner holds on netID.
func (s *state) release(owner, netID string) {
	p, ok := s.held[owner].get(netID)
	if !ok {
		return
	}
	if sub := s.nets[netID]; sub != nil {
		sub.Release(p.Addr(), owner)
	}
	s.held[owner] = s.held[owner].without(netID)
	if len(s.held[owner]) == 0 {
		delete(s.held, owner)
	}
}

// releaseAll frees everything owner holds.
func (s *state) releaseAll(owner string) {
	for _, h := range slices.Clone(s.held[owner]) {
		s.release(owner, h.net)
	}
}

func (s *state) putNetwork(n *pb.Network) {
	id := n.GetId()
	s.networks[id] = n
	if n.GetSpec().GetAnnotations().GetName() == DefaultNetwork {
		s.defaultID = id
	}
	if s.nets[id] != nil {
		return
	}
	p, err := netip.ParsePrefix(n.GetSubnet())
	if err != nil {
		return // not allocated yet; the round gives it a subnet
	}
	sub, err := ipam.NewSubnet(p)
	if err != nil {
		s.log.Error("network has a subnet the allocator cannot use", "network", id, "subnet", n.GetSubnet(), "err", err)
		return
	}
	s.nets[id] = sub
}

// apply folds one store event into s and reports whether a round is due.
// Addresses are reserved only from the snapshot (load) and by the loop's
// own allocations; events release them and bring new work.
func (s *state) apply(ev store.Event) bool {
	del := ev.Kind == store.EventDelete
	switch o := ev.Object.(type) {
	case *pb.Cluster:
		s.cluster = !del
		return s.defaultID == ""
	case *pb.Network:
		if del {
			delete(s.networks, o.GetId())
			delete(s.nets, o.GetId())
			if s.defaultID == o.GetId() {
				s.defaultID = ""
			}
			return true
		}
		s.putNetwork(o)
		return true
	case *pb.Service:
		if del {
			delete(s.services, o.GetId())
			s.releaseAll(o.GetId())
			return false
		}
		s.services[o.GetId()] = o
		return true
	case *pb.Task:
		return s.applyTask(del, o)
	}
	return false
}

func (s *state) applyTask(del bool, t *pb.Task) bool {
	id := t.GetId()
	if del || released(t) {
		delete(s.waiting, id)
		_, had := s.held[id]
		s.releaseAll(id)
		return had && len(s.waiting) > 0 // freed room someone may wait for
	}
	if needsAddresses(t) && s.held[id] == nil {
		s.waiting[id] = t
		return true
	}
	delete(s.waiting, id)
	return false
}
