package allocator

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/ids"
	"berth/overlay/ipam"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// NoAddresses starts the status error of a task the allocator cannot give
// its addresses ("cannot allocate addresses: ...").
const NoAddresses = "cannot allocate addresses"

// pendingMessage is the status message of a task the allocator gave its
// addresses, as the orchestrator writes it on a new task.
const pendingMessage = "pending task scheduling"

// plan is one round's decisions, written in one store batch.
type plan struct {
	ports    map[portKey]bool // published ports taken, as the round gives them
	services []*pb.Service    // services with their new endpoint
	dropped  map[string][]string
	tasks    []*pb.Task // tasks with their attachments and endpoint
	failed   []*pb.Task // tasks with the reason they have no addresses
}

// round creates the default network when missing, brings services'
// endpoints in line with their specs and gives waiting tasks addresses.
func (a *Allocator) round(ctx context.Context, st *state) error {
	if st.defaultID == "" {
		return a.createDefault(ctx, st)
	}
	p := &plan{dropped: map[string][]string{}, ports: st.takenPorts()}
	// A service's tasks take their endpoint from the stored service, so
	// they wait for a round after their service's endpoint was written.
	ready := map[string]error{}
	for _, svc := range st.services {
		if inSync, err := st.planService(p, svc); inSync || err != nil {
			ready[svc.GetId()] = err
		}
	}
	for _, t := range st.oldestFirst() {
		if t.GetSpec().GetAttachment() != nil {
			st.planAttachment(p, t, a.now())
		} else if err, ok := ready[t.GetServiceId()]; ok {
			st.planTask(p, t, err, a.now())
		}
	}
	return a.commit(ctx, st, p)
}

// oldestFirst lists the waiting tasks, the longest waiting first, so a
// task short of addresses gets the next one freed.
func (s *state) oldestFirst() []*pb.Task {
	out := slices.Collect(maps.Values(s.waiting))
	slices.SortFunc(out, func(a, b *pb.Task) int {
		return cmp.Or(a.GetMeta().GetCreatedAt().AsTime().Compare(b.GetMeta().GetCreatedAt().AsTime()), cmp.Compare(a.GetId(), b.GetId()))
	})
	return out
}

// createDefault stores the default network once the Cluster object (its
// address pool) exists; the network's event calls the next round.
func (a *Allocator) createDefault(ctx context.Context, st *state) error {
	if !st.cluster {
		return nil
	}
	n := &pb.Network{Id: ids.New(), Spec: &pb.NetworkSpec{
		Annotations: &pb.Annotations{Name: DefaultNetwork},
		Driver:      "overlay",
	}}
	err := a.store.Update(ctx, func(tx store.Tx) error { return createNetwork(tx, a.clusterID, n, defaultMaskLen) })
	var oe *ipam.OverlapError
	switch {
	case err == nil:
		a.log.Info("default network created", "network", n.GetId(), "subnet", n.GetSubnet(), "vni", n.GetVni())
		return nil
	case retryable(err):
		return fmt.Errorf("create the default network: %w", errStartOver)
	case errors.Is(err, ipam.ErrExhausted), errors.As(err, &oe), errors.Is(err, ErrNoCluster):
		// The pool is full: tasks wait; a network removed calls the next round.
		a.log.Error("cannot create the default network; services naming no network wait", "err", err)
		return nil
	}
	return fmt.Errorf("create the default network: %w", err)
}

// serviceNetworks lists the IDs of the networks svc's tasks join: those of
// its spec, or the default network when it names none.
func (s *state) serviceNetworks(svc *pb.Service) ([]string, error) {
	var out []string
	for _, att := range svc.GetSpec().GetNetworks() {
		if s.nets[att.GetTarget()] == nil {
			return nil, fmt.Errorf("network %q does not exist or has no subnet", att.GetTarget())
		}
		out = append(out, att.GetTarget())
	}
	if len(out) == 0 {
		out = []string{s.defaultID}
	}
	return out, nil
}

// planService computes the endpoint svc should have — its spec's ports and
// a VIP on each of its networks in VIP mode — allocating missing VIPs, and
// plans a write when the stored one differs. It reports whether the
// stored endpoint is current, or why none can be allocated.
func (s *state) planService(p *plan, svc *pb.Service) (inSync bool, err error) {
	nets, err := s.serviceNetworks(svc)
	if err != nil {
		return false, err
	}
	spec := svc.GetSpec().GetEndpoint()
	ep := &pb.Endpoint{}
	if spec != nil {
		ep.Spec = proto.Clone(spec).(*pb.EndpointSpec)
		for _, port := range spec.GetPorts() {
			ep.Ports = append(ep.Ports, proto.Clone(port).(*pb.PortConfig))
		}
		if err := givePorts(svc, ep.Ports, p.ports); err != nil {
			return false, err
		}
	}
	want := map[string]bool{}
	if spec.GetMode() == pb.EndpointSpec_MODE_VIP {
		for _, id := range nets {
			vip, err := s.vip(svc.GetId(), id)
			if err != nil {
				return false, fmt.Errorf("no virtual IP for the service: %w", err)
			}
			want[id] = true
			ep.VirtualIps = append(ep.VirtualIps, &pb.VirtualIP{NetworkId: id, Addr: vip.String()})
		}
	}
	for _, h := range s.held[svc.GetId()] {
		if !want[h.net] {
			p.dropped[svc.GetId()] = append(p.dropped[svc.GetId()], h.net)
		}
	}
	if proto.Equal(ep, svc.GetEndpoint()) {
		return true, nil
	}
	svc = proto.Clone(svc).(*pb.Service)
	svc.Endpoint = ep
	p.services = append(p.services, svc)
	return false, nil
}

// vip returns the VIP owner holds on netID, allocating one if needed.
func (s *state) vip(owner, netID string) (netip.Prefix, error) {
	if p, ok := s.held[owner].get(netID); ok {
		return p, nil
	}
	return s.allocate(owner, netID)
}

func (s *state) allocate(owner, netID string) (netip.Prefix, error) {
	sub := s.nets[netID]
	a, err := sub.Allocate(owner)
	if err != nil {
		return netip.Prefix{}, err
	}
	p := netip.PrefixFrom(a, sub.Prefix().Bits())
	s.hold(owner, netID, p)
	return p, nil
}

// planTask gives t an address on each network of its service, or plans
// writing why it cannot have them (svcErr, its service's failure, first).
func (s *state) planTask(p *plan, t *pb.Task, svcErr error, now time.Time) {
	svc := s.services[t.GetServiceId()]
	nets, err := s.serviceNetworks(svc)
	if svcErr != nil {
		err = svcErr
	}
	var atts []*pb.NetworkAttachmentStatus
	if err == nil {
		atts, err = s.addresses(t.GetId(), nets, svc.GetSpec().GetNetworks())
	}
	t = proto.Clone(t).(*pb.Task)
	if err != nil {
		s.fail(p, t, err, now)
		return
	}
	t.Networks = atts
	t.Endpoint = proto.Clone(svc.GetEndpoint()).(*pb.Endpoint)
	if t.GetStatus().GetErr() != "" {
		t.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING, Timestamp: timestamppb.New(now), Message: pendingMessage}
	}
	p.tasks = append(p.tasks, t)
}

// fail releases what t got this round and plans writing why it has no
// addresses; the task stays pending.
func (s *state) fail(p *plan, t *pb.Task, err error, now time.Time) {
	s.releaseAll(t.GetId())
	reason := fmt.Sprintf("%s: %v", NoAddresses, err)
	if t.GetStatus().GetErr() != reason {
		t.Status = &pb.TaskStatus{State: pb.TaskState_TASK_STATE_PENDING, Timestamp: timestamppb.New(now), Message: reason, Err: reason}
		p.failed = append(p.failed, t)
	}
}

// addresses gives owner (a task) an address on each of nets, with the
// aliases spec declares for it there: a service's task and a standalone
// container's attachment alike.
func (s *state) addresses(owner string, nets []string, spec []*pb.NetworkAttachment) ([]*pb.NetworkAttachmentStatus, error) {
	atts := make([]*pb.NetworkAttachmentStatus, 0, len(nets))
	for _, id := range nets {
		if s.nets[id] == nil {
			return nil, fmt.Errorf("network %q does not exist or has no subnet", id)
		}
		addr, err := s.allocate(owner, id)
		if err != nil {
			return nil, err
		}
		atts = append(atts, &pb.NetworkAttachmentStatus{NetworkId: id, Addresses: []string{addr.String()}, Aliases: aliases(spec, id)})
	}
	return atts, nil
}

// aliases are the names spec's attachment to netID declares.
func aliases(spec []*pb.NetworkAttachment, netID string) []string {
	for _, att := range spec {
		if att.GetTarget() == netID {
			return slices.Clone(att.GetAliases())
		}
	}
	return nil
}

// commit writes p in one store batch. Each write is checked against the
// store inside it: a service that changed meanwhile, or a task no longer
// waiting, is skipped and its fresh addresses freed; the store's next
// event brings it back if there is still work.
func (a *Allocator) commit(ctx context.Context, st *state, p *plan) error {
	if len(p.services)+len(p.tasks)+len(p.failed) == 0 {
		return nil
	}
	var stale []string // owners whose fresh addresses must go back
	written := map[string]bool{}
	err := a.store.Batch(ctx, func(b *store.Batch) error {
		for _, svc := range p.services {
			if err := b.Update(func(tx store.Tx) error {
				cur := tx.GetService(svc.GetId())
				if cur == nil || cur.GetMeta().GetVersion() != svc.GetMeta().GetVersion() {
					stale = append(stale, svc.GetId())
					return nil
				}
				written[svc.GetId()] = true
				return tx.UpdateService(svc)
			}); err != nil {
				return err
			}
		}
		for _, t := range append(p.tasks, p.failed...) {
			if err := b.Update(func(tx store.Tx) error {
				if cur := tx.GetTask(t.GetId()); cur == nil || !needsAddresses(cur) {
					stale = append(stale, t.GetId())
					return nil
				}
				return tx.UpdateTask(t)
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		if ctx.Err() == nil && retryable(err) {
			return fmt.Errorf("write allocations: %w (%w)", errStartOver, err)
		}
		return fmt.Errorf("write allocations: %w", err)
	}
	st.settle(p, stale, written)
	a.log.Debug("allocated", "services", len(p.services), "tasks", len(p.tasks), "failed", len(p.failed), "stale", len(stale))
	return nil
}

// settle folds a written plan into st: skipped owners give back what this
// round gave them (a skipped service keeps the VIPs it had), services
// written without a network's VIP give it back, tasks stop waiting.
func (st *state) settle(p *plan, stale []string, written map[string]bool) {
	for _, owner := range stale {
		if svc := st.services[owner]; svc != nil {
			keep := map[string]bool{}
			for _, v := range svc.GetEndpoint().GetVirtualIps() {
				keep[v.GetNetworkId()] = true
			}
			for _, h := range slices.Clone(st.held[owner]) {
				if !keep[h.net] {
					st.release(owner, h.net)
				}
			}
			continue
		}
		st.releaseAll(owner)
		delete(st.waiting, owner)
	}
	for svcID, nets := range p.dropped {
		if written[svcID] {
			for _, id := range nets {
				st.release(svcID, id)
			}
		}
	}
	for _, t := range p.tasks {
		delete(st.waiting, t.GetId())
	}
}

// retryable reports whether a write failed because another writer got
// there first: starting over from a fresh view resolves it.
func retryable(err error) bool {
	return errors.Is(err, store.ErrSequenceConflict) || errors.Is(err, store.ErrNotFound) ||
		errors.Is(err, store.ErrExist) || errors.Is(err, store.ErrNameConflict)
}
