package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"berth/agent/runtime"
	"berth/discovery/dns"
	pb "berth/proto/berth/v1"
)

// resolvConfTarget is where a container's resolver configuration is.
const resolvConfTarget = "/etc/resolv.conf"

// names feeds the node's DNS server (discovery/dns) from the assignment
// stream: each Network item opens the network on its gateway address
// (which overlay has just put on the network's bridge), each
// ServiceEndpoint item sets the names of a service on a network. It also
// writes each task's /etc/resolv.conf, pointing at its first network's
// gateway.
//
// Why the gateway and not Swarm's 127.0.0.11: Swarm opens a socket inside
// every container's namespace and NATs to it; the gateway is already on
// every node's bridge at the same address, reachable from each container
// on the network and from nothing else, and tells the server which
// network a query came from. One socket pair per network, none per
// container, and no rule to install.
type names struct {
	srv    *dns.Server
	resolv *dns.ResolvFile
	dir    string // the tasks' resolv.conf files
	port   uint16 // 53; tests take any
	log    *slog.Logger

	mu     sync.Mutex
	nets   map[string]dns.Network // to serve, by network ID
	failed map[string]string      // networks whose listen failed, with the error logged
}

func newNames(dir, resolvConf string, log *slog.Logger) *names {
	rf := dns.ResolvConf(resolvConf, log)
	return &names{
		srv:    dns.New(dns.Config{Upstreams: rf.Upstreams, Log: log}),
		resolv: rf, dir: dir, port: 53, log: log,
		nets: map[string]dns.Network{}, failed: map[string]string{},
	}
}

// apply takes a session message's networks and endpoints; overlay has
// applied the message's networks first.
func (n *names) apply(ctx context.Context, full bool, changes []*pb.AssignmentChange) {
	if !full && !touchesNames(changes) {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	u := dns.Update{Full: full}
	if full {
		clear(n.nets)
	}
	for _, ch := range changes {
		remove := ch.GetAction() == pb.AssignmentChange_ACTION_REMOVE
		switch {
		case ch.GetNetwork() != nil && remove:
			delete(n.nets, ch.GetNetwork().GetId())
			n.srv.RemoveNetwork(ch.GetNetwork().GetId())
		case ch.GetNetwork() != nil:
			dn, err := dnsNetwork(ch.GetNetwork(), n.port)
			if err != nil {
				n.log.Warn("dns: network not served", "err", err)
				continue
			}
			n.nets[dn.ID] = dn
		case ch.GetEndpoint() != nil && remove:
			ep := ch.GetEndpoint()
			u.Remove = append(u.Remove, dns.Key{ServiceID: ep.GetServiceId(), NetworkID: ep.GetNetworkId()})
		case ch.GetEndpoint() != nil:
			u.Set = append(u.Set, dnsService(ch.GetEndpoint(), n.log))
		}
	}
	n.serveLocked(ctx, full)
	n.srv.Apply(u)
}

func touchesNames(changes []*pb.AssignmentChange) bool {
	for _, ch := range changes {
		if ch.GetNetwork() != nil || ch.GetEndpoint() != nil {
			return true
		}
	}
	return false
}

// serveLocked serves every wanted network (again, for one whose listen
// failed before) and, after a full message, stops the others.
func (n *names) serveLocked(ctx context.Context, full bool) {
	if full {
		for _, id := range n.srv.Networks() {
			if _, ok := n.nets[id]; !ok {
				n.srv.RemoveNetwork(id)
			}
		}
	}
	for id, dn := range n.nets {
		err := n.srv.SetNetwork(ctx, dn)
		switch {
		case errors.Is(err, dns.ErrUDPOnly):
			n.log.Warn("dns: another DNS server of the host holds TCP port 53 on every address", "network", id, "err", err)
		case err != nil && n.failed[id] != err.Error():
			n.failed[id] = err.Error()
			n.log.Error("dns: cannot serve network; its containers cannot resolve names", "network", id, "err", err)
		case err == nil && n.failed[id] != "":
			delete(n.failed, id)
			n.log.Info("dns: serving network", "network", id, "addr", dn.Listen)
		}
	}
}

// close stops the server.
func (n *names) close() { n.srv.Close() }

// dnsNetwork is where network nw is served: its gateway, on port.
func dnsNetwork(nw *pb.Network, port uint16) (dns.Network, error) {
	sub, err := netip.ParsePrefix(nw.GetSubnet())
	if err != nil {
		return dns.Network{}, fmt.Errorf("network %s: subnet %q: %w", nw.GetId(), nw.GetSubnet(), err)
	}
	gw, err := netip.ParseAddr(nw.GetGateway())
	if err != nil {
		return dns.Network{}, fmt.Errorf("network %s: gateway %q: %w", nw.GetId(), nw.GetGateway(), err)
	}
	return dns.Network{ID: nw.GetId(), Subnet: sub, Listen: netip.AddrPortFrom(gw, port)}, nil
}

// dnsService turns an endpoint into the server's terms; a task whose
// address does not parse is left out (and logged).
func dnsService(ep *pb.ServiceEndpoint, log *slog.Logger) dns.Service {
	s := dns.Service{ID: ep.GetServiceId(), Name: ep.GetServiceName(), NetworkID: ep.GetNetworkId(), Aliases: ep.GetAliases()}
	if ep.GetMode() != pb.EndpointSpec_MODE_DNSRR && ep.GetVip() != "" {
		if p, err := netip.ParsePrefix(ep.GetVip()); err == nil {
			s.VIP = p.Addr()
		} else {
			log.Warn("dns: service VIP does not parse", "service", s.Name, "vip", ep.GetVip())
		}
	}
	for _, p := range ep.GetPorts() {
		proto := "tcp"
		if p.GetProtocol() == pb.PortConfig_PROTOCOL_UDP {
			proto = "udp"
		}
		s.Ports = append(s.Ports, dns.Port{Name: p.GetName(), Proto: proto, Target: uint16(p.GetTargetPort())})
	}
	for _, t := range ep.GetTasks() {
		p, err := netip.ParsePrefix(t.GetAddress())
		if err != nil {
			log.Warn("dns: task address does not parse", "task", t.GetTaskId(), "address", t.GetAddress())
			continue
		}
		s.Tasks = append(s.Tasks, dns.Task{ID: t.GetTaskId(), Name: t.GetName(), Addr: p.Addr(), Ready: t.GetReady()})
	}
	return s
}

// Mounts writes the task's resolv.conf and returns its mount; a task on
// no overlay network keeps its image's.
func (n *names) Mounts(t *pb.Task) ([]runtime.Mount, error) {
	var first string
	for _, a := range t.GetNetworks() {
		if len(a.GetAddresses()) > 0 {
			first = a.GetNetworkId()
			break
		}
	}
	if first == "" {
		return nil, nil
	}
	if !plainName(t.GetId()) {
		return nil, fmt.Errorf("task ID %q is not a plain name: its resolv.conf would be written outside %s", t.GetId(), n.dir)
	}
	n.mu.Lock()
	dn, ok := n.nets[first]
	n.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("resolv.conf: network %s has not reached this node", first)
	}
	if err := os.MkdirAll(n.dir, 0o755); err != nil {
		return nil, fmt.Errorf("resolv.conf dir: %w", err)
	}
	file := filepath.Join(n.dir, t.GetId())
	if err := os.WriteFile(file, resolvConf(dn.Listen.Addr(), n.resolv.Read()), 0o644); err != nil {
		return nil, fmt.Errorf("write resolv.conf of %s: %w", t.GetId(), err)
	}
	return []runtime.Mount{{Type: runtime.MountBind, Source: file, Target: resolvConfTarget, ReadOnly: true}}, nil
}

// resolvConf is a container's resolv.conf: the node's server (which
// answers for every network of the task, and forwards the rest to the
// host's resolvers), and the host's search domains and options, as Docker
// copies them.
func resolvConf(server netip.Addr, host dns.Resolv) []byte {
	var b strings.Builder
	b.WriteString("# berth: the node's DNS server for this task's networks\n")
	fmt.Fprintf(&b, "nameserver %s\n", server)
	if len(host.Search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(host.Search, " "))
	}
	if len(host.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(host.Options, " "))
	}
	return []byte(b.String())
}

// Remove deletes the task's resolv.conf.
func (n *names) Remove(taskID string) error {
	if !plainName(taskID) {
		return nil
	}
	if err := os.Remove(filepath.Join(n.dir, taskID)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove resolv.conf of %s: %w", taskID, err)
	}
	return nil
}

// IDs lists the tasks that have a resolv.conf.
func (n *names) IDs() []string {
	ents, _ := os.ReadDir(n.dir)
	var ids []string
	for _, e := range ents {
		ids = append(ids, e.Name())
	}
	return ids
}

// server is the address the node's DNS server answers network id's
// containers on (its gateway), once the network reached the node.
func (n *names) server(id string) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	dn, ok := n.nets[id]
	if !ok {
		return "", false
	}
	return dn.Listen.Addr().String(), true
}
