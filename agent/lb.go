package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"berth/overlay/dataplane"
	pb "berth/proto/berth/v1"
)

// ErrPortInUse says a host-mode port is already bound on this node by a
// process outside berth.
var ErrPortInUse = errors.New("already in use on this node")

// From the services' endpoints (the assignment stream's ServiceEndpoint
// items) and the containers attached on this node, the overlay derives
// what the kernel balances: each container's VIPs (the services on its
// networks, with their ready tasks) and the ports the node publishes
// (ingress ports of every service, host ports of its own tasks). Both are
// written whole when they change; see overlay/dataplane's vip.go and
// publish.go for the rules and why they live where they do.

// local is a container attached on this node.
type local struct {
	task *pb.Task
	ns   string // its network namespace, /proc/PID/ns/net
	addr netip.Addr
	// host are its host-mode ports as published, published_port filled.
	host []*pb.PortConfig
	vips []dataplane.VIP // as last written into it
}

// endpointKey keys a ServiceEndpoint: service ID + "/" + network ID.
func endpointKey(ep *pb.ServiceEndpoint) string { return ep.GetServiceId() + "/" + ep.GetNetworkId() }

// refreshLocked rewrites the VIP table of each container whose VIPs
// changed, and the node's published ports when they changed.
func (o *overlay) refreshLocked(p *dataplane.Plane) {
	if !o.synced {
		return
	}
	for id, l := range o.ctrs {
		vips := o.vipsFor(l.task)
		if slices.EqualFunc(vips, l.vips, sameVIP) && l.vips != nil {
			continue
		}
		if err := p.SetVIPs(l.ns, vips); err != nil {
			o.log.Warn("write the container's VIPs", "task", id, "err", err)
			continue
		}
		o.log.Debug("VIPs written", "task", id, "ns", l.ns, "vips", len(vips))
		l.vips = vips
	}
	pubs := o.published()
	if slices.EqualFunc(pubs, o.pubs, samePublished) && o.pubs != nil {
		return
	}
	if err := p.SetPublished(pubs); err != nil {
		o.log.Warn("publish ports", "err", err)
		return
	}
	o.log.Debug("ports published", "services", len(pubs))
	o.pubs = pubs
}

// vipsFor lists the VIPs of the services on t's networks, with the
// addresses of their ready tasks there. Never nil: a written empty list
// is told from one never written.
func (o *overlay) vipsFor(t *pb.Task) []dataplane.VIP {
	nets := map[string]bool{}
	for _, a := range t.GetNetworks() {
		nets[a.GetNetworkId()] = true
	}
	out := []dataplane.VIP{}
	for _, k := range sortedKeys(o.eps) {
		ep := o.eps[k]
		vip, err := netip.ParsePrefix(ep.GetVip())
		if !nets[ep.GetNetworkId()] || err != nil {
			continue
		}
		v := dataplane.VIP{ServiceID: ep.GetServiceId(), Addr: vip.Addr()}
		for _, et := range ep.GetTasks() {
			if a, err := netip.ParsePrefix(et.GetAddress()); err == nil && et.GetReady() {
				v.Backends = append(v.Backends, a.Addr())
			}
		}
		out = append(out, v)
	}
	return out
}

// published lists what the node publishes: every service's ingress ports,
// to this node's ready tasks of it or else the nodes running one, and
// each local task's host ports, to that task.
func (o *overlay) published() []dataplane.Published {
	bySvc := map[string]*dataplane.Published{}
	seen := map[string]bool{} // service + task or node, counted once over its networks
	for _, k := range sortedKeys(o.eps) {
		ep := o.eps[k]
		ports := ingressPorts(ep.GetPorts())
		if len(ports) == 0 {
			continue
		}
		pub := bySvc[ep.GetServiceId()]
		if pub == nil {
			pub = &dataplane.Published{ServiceID: ep.GetServiceId(), Ports: ports}
			bySvc[ep.GetServiceId()] = pub
		}
		for _, et := range ep.GetTasks() {
			o.addBackend(pub, et, seen)
		}
	}
	out := []dataplane.Published{}
	for _, id := range sortedKeys(bySvc) {
		out = append(out, *bySvc[id])
	}
	for _, id := range sortedKeys(o.ctrs) {
		l := o.ctrs[id]
		if ports := toPublished(l.host); len(ports) > 0 {
			out = append(out, dataplane.Published{ServiceID: "task " + id, Ports: ports, Local: []netip.Addr{l.addr}})
		}
	}
	return out
}

// addBackend adds a ready task to pub: a local one by its first address
// (its container's default route leads back through this node), another
// node's by that node's address.
func (o *overlay) addBackend(pub *dataplane.Published, et *pb.EndpointTask, seen map[string]bool) {
	if !et.GetReady() {
		return
	}
	if l := o.ctrs[et.GetTaskId()]; l != nil {
		if !seen[pub.ServiceID+" "+et.GetTaskId()] {
			seen[pub.ServiceID+" "+et.GetTaskId()] = true
			pub.Local = append(pub.Local, l.addr)
		}
		return
	}
	node, err := netip.ParseAddr(et.GetNodeAddr())
	if err != nil || node == o.self || seen[pub.ServiceID+" "+node.String()] {
		return // a task of this node not attached (yet, or any more) is no backend
	}
	seen[pub.ServiceID+" "+node.String()] = true
	pub.Remote = append(pub.Remote, node)
}

// ingressPorts are the ingress-mode ports of ports, as the kernel takes them.
func ingressPorts(ports []*pb.PortConfig) []dataplane.PublishedPort {
	var out []dataplane.PublishedPort
	for _, p := range ports {
		if p.GetPublishMode() == pb.PortConfig_PUBLISH_MODE_INGRESS && p.GetPublishedPort() != 0 {
			out = append(out, toPort(p))
		}
	}
	return out
}

// toPublished converts host-mode ports, published_port filled.
func toPublished(ports []*pb.PortConfig) []dataplane.PublishedPort {
	var out []dataplane.PublishedPort
	for _, p := range ports {
		pp := toPort(p)
		pp.Host = true
		out = append(out, pp)
	}
	return out
}

func toPort(p *pb.PortConfig) dataplane.PublishedPort {
	proto := uint8(unix.IPPROTO_TCP)
	if p.GetProtocol() == pb.PortConfig_PROTOCOL_UDP {
		proto = unix.IPPROTO_UDP
	}
	return dataplane.PublishedPort{Protocol: proto, Port: uint16(p.GetPublishedPort()), Target: uint16(p.GetTargetPort())}
}

// hostPorts gives t's host-mode ports their node port: the one asked for,
// refused when a process of this node binds it; else the one t had (its
// status says, after an agent restart); else a free one the kernel picks.
func hostPorts(t *pb.Task) ([]*pb.PortConfig, error) {
	var out []*pb.PortConfig
	had := t.GetStatus().GetPorts()
	for i, p := range t.GetEndpoint().GetPorts() {
		if p.GetPublishMode() != pb.PortConfig_PUBLISH_MODE_HOST {
			continue
		}
		if tp := p.GetTargetPort(); tp == 0 || tp > 65535 || p.GetPublishedPort() > 65535 {
			return nil, fmt.Errorf("ports[%d]: %d:%d is not a pair of ports; use 1-65535", i, p.GetPublishedPort(), tp)
		}
		q := proto.Clone(p).(*pb.PortConfig)
		if q.PublishedPort == 0 {
			q.PublishedPort = givenBefore(q, had)
		}
		port, err := probePort(q)
		if err != nil {
			return nil, err
		}
		q.PublishedPort = port
		out = append(out, q)
	}
	return out, nil
}

// givenBefore is the node port a port like p had in had, or 0.
func givenBefore(p *pb.PortConfig, had []*pb.PortConfig) uint32 {
	for _, h := range had {
		if h.GetTargetPort() == p.GetTargetPort() && h.GetProtocol() == p.GetProtocol() && h.GetPublishMode() == p.GetPublishMode() {
			return h.GetPublishedPort()
		}
	}
	return 0
}

// probePort binds p's node port on every address of the node for a
// moment: a port a process holds is refused (DNAT would hide it), port 0
// becomes a free one.
func probePort(p *pb.PortConfig) (uint32, error) {
	addr := ":" + strconv.Itoa(int(p.GetPublishedPort()))
	var port int
	var err error
	if p.GetProtocol() == pb.PortConfig_PROTOCOL_UDP {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp4", addr); err == nil {
			port = c.LocalAddr().(*net.UDPAddr).Port
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp4", addr); err == nil {
			port = l.Addr().(*net.TCPAddr).Port
			l.Close()
		}
	}
	if errors.Is(err, unix.EADDRINUSE) {
		return 0, fmt.Errorf("publish port %d/%s: %w", p.GetPublishedPort(), protoName(p), ErrPortInUse)
	}
	if err != nil {
		return 0, fmt.Errorf("publish port %d/%s: %w", p.GetPublishedPort(), protoName(p), err)
	}
	return uint32(port), nil
}

func protoName(p *pb.PortConfig) string {
	if p.GetProtocol() == pb.PortConfig_PROTOCOL_UDP {
		return "udp"
	}
	return "tcp"
}

func sameVIP(a, b dataplane.VIP) bool {
	return a.ServiceID == b.ServiceID && a.Addr == b.Addr && slices.Equal(a.Backends, b.Backends)
}

func samePublished(a, b dataplane.Published) bool {
	return a.ServiceID == b.ServiceID && slices.Equal(a.Ports, b.Ports) && slices.Equal(a.Local, b.Local) && slices.Equal(a.Remote, b.Remote)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
