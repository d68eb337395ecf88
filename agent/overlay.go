package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"

	"berth/overlay/dataplane"
	pb "berth/proto/berth/v1"
)

// networking is all a task controller knows of the node's overlay: give a
// container its task's endpoints — its interfaces, the VIPs it reaches,
// the ports it publishes — (pid is its init, before the user process
// runs), take them away at its end. Attach returns the ports published
// for the task, node ports filled in, for its status.
type networking interface {
	Attach(ctx context.Context, pid int, t *pb.Task) ([]*pb.PortConfig, error)
	Detach(t *pb.Task)
}

// errNoOverlay refuses published ports on an agent without overlay
// networking: they are kernel rules towards the task's overlay address.
var errNoOverlay = errors.New("publishing ports needs overlay networking, which this agent does not build (berth-agent --overlay=false, or berth-manager --dev --overlay=false); publish none, or run berth-agent with overlay networking")

// attachNetworks is the container's pre-start hook: it gives the new
// network namespace the task's interfaces and VIPs, and publishes its
// ports, before the user process runs, as Docker does, so a process that
// connects at its first instant finds its network. A failed attach undoes
// itself. The published ports go to *ports.
func (c *controller) attachNetworks(t *pb.Task, ports *[]*pb.PortConfig) func(ctx context.Context, pid int) error {
	if c.env.net == nil {
		return nil
	}
	return func(ctx context.Context, pid int) error {
		got, err := c.env.net.Attach(ctx, pid, t)
		if err != nil {
			c.env.net.Detach(t)
			return fmt.Errorf("attach to the task's networks: %w", err)
		}
		*ports = got
		return nil
	}
}

// detachNetworks takes the task's endpoints away: after a failed start,
// or once its container has ended (its interfaces went with it; its VIP
// table and published ports go now).
func (c *controller) detachNetworks(t *pb.Task) {
	if c.env.net != nil {
		c.env.net.Detach(t)
	}
	c.ports = nil
}

// overlay is the node's overlay networks, built by overlay/dataplane from
// the networks and peers of the assignment stream (see the dispatcher's
// peerSet for why peers come that way). The Plane is made on first use,
// when the node's underlay address is known.
type overlay struct {
	underlay func() (netip.Addr, error)
	log      *slog.Logger

	mu    sync.Mutex
	plane *dataplane.Plane
	self  netip.Addr // the node's underlay address
	swept bool
	// synced: a full message was applied; until then nothing is
	// published nor written into containers (an adopted container
	// registering first would lose its VIPs for a moment).
	synced bool
	nets   map[string]dataplane.Network
	peers  map[string]dataplane.Peer      // by network ID + "/" + task ID
	eps    map[string]*pb.ServiceEndpoint // by service ID + "/" + network ID
	ctrs   map[string]*local              // attached containers, by task ID
	pubs   []dataplane.Published          // as last published
}

func newOverlay(underlay func() (netip.Addr, error), log *slog.Logger) *overlay {
	return &overlay{underlay: underlay, log: log, nets: map[string]dataplane.Network{}, peers: map[string]dataplane.Peer{},
		eps: map[string]*pb.ServiceEndpoint{}, ctrs: map[string]*local{}}
}

// planeLocked returns the Plane, making it on first use.
func (o *overlay) planeLocked() (*dataplane.Plane, error) {
	if o.plane != nil {
		return o.plane, nil
	}
	addr, err := o.underlay()
	if err != nil {
		return nil, fmt.Errorf("overlay: the node's underlay address: %w", err)
	}
	p, err := dataplane.New(dataplane.Config{Underlay: addr, Log: o.log})
	if err != nil {
		return nil, err
	}
	o.plane, o.self = p, addr
	return p, nil
}

// apply builds and removes networks and peers as a session message says.
// The first full message also sweeps what an earlier agent left that no
// assigned task uses: tasks lists the message's tasks.
func (o *overlay) apply(full bool, changes []*pb.AssignmentChange, tasks []*pb.Task) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !full && !touchesOverlay(changes) {
		return
	}
	p, err := o.planeLocked()
	if err != nil {
		o.log.Error("overlay unavailable; tasks on networks will fail to start", "err", err)
		return
	}
	if full {
		o.resync(p, changes, tasks)
		o.synced = true
	}
	for _, ch := range changes {
		if err := o.change(p, ch); err != nil {
			o.log.Warn("overlay change failed", "err", err)
		}
	}
	o.refreshLocked(p)
}

func touchesOverlay(changes []*pb.AssignmentChange) bool {
	for _, ch := range changes {
		if ch.GetNetwork() != nil || ch.GetPeer() != nil || ch.GetEndpoint() != nil {
			return true
		}
	}
	return false
}

// resync drops the networks and peers a full message no longer holds; the
// first one also sweeps links no assigned task uses.
func (o *overlay) resync(p *dataplane.Plane, changes []*pb.AssignmentChange, tasks []*pb.Task) {
	nets, peers := map[string]bool{}, map[string]bool{}
	var keepNets []dataplane.Network
	for _, ch := range changes {
		if n := ch.GetNetwork(); n != nil {
			nets[n.GetId()] = true
			if dn, err := toNetwork(n); err == nil {
				keepNets = append(keepNets, dn)
			}
		}
		if pr := ch.GetPeer(); pr != nil {
			peers[pr.GetNetworkId()+"/"+pr.GetTaskId()] = true
		}
	}
	o.eps = map[string]*pb.ServiceEndpoint{} // the message's own come next
	if !o.swept {
		o.swept = true
		var eps []dataplane.Endpoint
		for _, t := range tasks {
			eps = append(eps, endpoints(t)...)
		}
		if err := p.Sweep(keepNets, eps); err != nil {
			o.log.Warn("sweep overlay leftovers", "err", err)
		}
		o.nets, o.peers = map[string]dataplane.Network{}, map[string]dataplane.Peer{}
	}
	for k, pr := range o.peers {
		if !peers[k] {
			o.removePeer(p, k, pr)
		}
	}
	for id := range o.nets {
		if !nets[id] {
			o.removeNetwork(p, id)
		}
	}
}

// change applies one network or peer change.
func (o *overlay) change(p *dataplane.Plane, ch *pb.AssignmentChange) error {
	remove := ch.GetAction() == pb.AssignmentChange_ACTION_REMOVE
	switch {
	case ch.GetNetwork() != nil && remove:
		o.removeNetwork(p, ch.GetNetwork().GetId())
	case ch.GetNetwork() != nil:
		n, err := toNetwork(ch.GetNetwork())
		if err != nil {
			return err
		}
		if err := p.SetNetwork(n); err != nil {
			return err
		}
		o.nets[n.ID] = n
	case ch.GetEndpoint() != nil && remove:
		delete(o.eps, endpointKey(ch.GetEndpoint()))
	case ch.GetEndpoint() != nil:
		o.eps[endpointKey(ch.GetEndpoint())] = ch.GetEndpoint()
	case ch.GetPeer() != nil:
		pr := ch.GetPeer()
		key := pr.GetNetworkId() + "/" + pr.GetTaskId()
		peer, err := toPeer(pr)
		if err != nil {
			return err
		}
		if remove {
			o.removePeer(p, key, peer)
			return nil
		}
		if err := p.SetPeer(peer); err != nil {
			return err
		}
		o.peers[key] = peer
		o.log.Debug("peer set", "network", peer.NetworkID, "addr", peer.Addr, "node", peer.Node)
	}
	return nil
}

func (o *overlay) removePeer(p *dataplane.Plane, key string, pr dataplane.Peer) {
	delete(o.peers, key)
	if err := p.RemovePeer(pr.NetworkID, pr.Addr); err != nil {
		o.log.Warn("remove overlay peer", "peer", key, "err", err)
	}
}

func (o *overlay) removeNetwork(p *dataplane.Plane, id string) {
	delete(o.nets, id)
	for k, pr := range o.peers {
		if pr.NetworkID == id {
			delete(o.peers, k)
		}
	}
	if err := p.RemoveNetwork(id); err != nil {
		o.log.Warn("remove overlay network", "network", id, "err", err)
	}
}

// Attach gives the container with pid an interface on each of t's
// networks, writes the VIPs it reaches into it and publishes its ports.
// Attaching a container attached before (an agent restart adopting it)
// changes nothing but registers it again.
func (o *overlay) Attach(ctx context.Context, pid int, t *pb.Task) ([]*pb.PortConfig, error) {
	eps := endpoints(t)
	if len(eps) == 0 {
		if len(t.GetEndpoint().GetPorts()) > 0 {
			return nil, errors.New("publishing ports needs the task on an overlay network, and it has no address on one")
		}
		return nil, nil
	}
	host, err := hostPorts(t)
	if err != nil {
		return nil, err
	}
	o.mu.Lock()
	p, err := o.planeLocked()
	o.mu.Unlock()
	if err != nil {
		return nil, err
	}
	ns := fmt.Sprintf("/proc/%d/ns/net", pid)
	for _, ep := range eps {
		if err := p.Attach(ns, ep); err != nil {
			return nil, err
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ctrs[t.GetId()] = &local{task: t, ns: ns, addr: eps[0].Addr.Addr(), host: host}
	o.refreshLocked(p)
	return slices.Concat(host, ingress(t.GetEndpoint().GetPorts())), nil
}

// ingress are the ingress-mode ports of ports.
func ingress(ports []*pb.PortConfig) []*pb.PortConfig {
	var out []*pb.PortConfig
	for _, p := range ports {
		if p.GetPublishMode() == pb.PortConfig_PUBLISH_MODE_INGRESS {
			out = append(out, p)
		}
	}
	return out
}

// Detach removes t's interfaces, its published ports and its place behind
// this node's published ports.
func (o *overlay) Detach(t *pb.Task) {
	o.mu.Lock()
	p := o.plane
	if l := o.ctrs[t.GetId()]; p != nil && l != nil {
		delete(o.ctrs, t.GetId())
		p.ReleaseVIPs(l.ns)
		o.refreshLocked(p)
	}
	o.mu.Unlock()
	if p == nil {
		return
	}
	for _, ep := range endpoints(t) {
		if err := p.Detach(ep); err != nil {
			o.log.Warn("detach task endpoint", "task", t.GetId(), "err", err)
		}
	}
}

// endpoints are t's interfaces: eth0, eth1… in the order of its
// attachments, the default route through the first.
func endpoints(t *pb.Task) []dataplane.Endpoint {
	var out []dataplane.Endpoint
	for i, a := range t.GetNetworks() {
		if len(a.GetAddresses()) == 0 {
			continue
		}
		p, err := netip.ParsePrefix(a.GetAddresses()[0])
		if err != nil {
			continue
		}
		out = append(out, dataplane.Endpoint{TaskID: t.GetId(), NetworkID: a.GetNetworkId(), Addr: p,
			IfName: fmt.Sprintf("eth%d", i), DefaultRoute: i == 0})
	}
	return out
}

func toNetwork(n *pb.Network) (dataplane.Network, error) {
	sub, err := netip.ParsePrefix(n.GetSubnet())
	if err != nil {
		return dataplane.Network{}, fmt.Errorf("network %s: subnet %q: %w", n.GetId(), n.GetSubnet(), err)
	}
	gw, err := netip.ParseAddr(n.GetGateway())
	if err != nil {
		return dataplane.Network{}, fmt.Errorf("network %s: gateway %q: %w", n.GetId(), n.GetGateway(), err)
	}
	return dataplane.Network{ID: n.GetId(), VNI: n.GetVni(), Subnet: sub, Gateway: gw}, nil
}

func toPeer(pr *pb.NetworkPeer) (dataplane.Peer, error) {
	a, err := netip.ParsePrefix(pr.GetAddress())
	if err != nil {
		return dataplane.Peer{}, fmt.Errorf("peer %s: address %q: %w", pr.GetTaskId(), pr.GetAddress(), err)
	}
	node, err := netip.ParseAddr(pr.GetNodeAddr())
	if err != nil {
		return dataplane.Peer{}, fmt.Errorf("peer %s: node %q: %w", pr.GetTaskId(), pr.GetNodeAddr(), err)
	}
	return dataplane.Peer{NetworkID: pr.GetNetworkId(), Addr: a.Addr(), Node: node}, nil
}

// built says whether network id is built on this node.
func (o *overlay) built(id string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	_, ok := o.nets[id]
	return ok
}
