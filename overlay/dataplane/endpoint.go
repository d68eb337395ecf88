package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Endpoint is a local task's interface on a network.
type Endpoint struct {
	TaskID    string
	NetworkID string
	// Addr is the task's address with its network's prefix length.
	Addr netip.Prefix
	// IfName is the interface's name inside the container, e.g. "eth0".
	IfName string
	// DefaultRoute routes everything off the container's networks through
	// this network's gateway (set on one endpoint of a task).
	DefaultRoute bool
}

// hostName is the name of the endpoint's veth end on the node: stable, so
// a restarted agent finds it again from the task alone.
func (p *Plane) hostName(ep Endpoint) string {
	return p.name('e', hashName(ep.TaskID, ep.NetworkID))
}

// Attach gives the container whose network namespace is at nsPath (such
// as /proc/PID/ns/net) an interface on ep's network: a veth whose node end
// is a port of the network's bridge and whose container end is ep.IfName
// with ep's address and the MAC derived from it, up, at the overlay MTU.
func (p *Plane) Attach(nsPath string, ep Endpoint) error {
	p.mu.Lock()
	n := p.nets[ep.NetworkID]
	p.mu.Unlock()
	if n == nil {
		return fmt.Errorf("dataplane: attach task %s: network %s is not built on this node", ep.TaskID, ep.NetworkID)
	}
	if !n.Subnet.Contains(ep.Addr.Addr()) || ep.Addr.Bits() != n.Subnet.Bits() {
		return fmt.Errorf("dataplane: attach task %s: address %s is not in network %s's subnet %s", ep.TaskID, ep.Addr, ep.NetworkID, n.Subnet)
	}
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("dataplane: attach task %s: open %s: %w", ep.TaskID, nsPath, err)
	}
	defer ns.Close()
	host := p.hostName(ep)
	if _, err := p.h.LinkByName(host); err == nil {
		return nil // attached before: a container started again, or adopted
	}
	tmp := p.name('p', hashName(ep.TaskID, ep.NetworkID))
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: host, MTU: p.mtu, MasterIndex: n.bridge.Attrs().Index},
		PeerName:  tmp, PeerMTU: uint32(p.mtu), PeerHardwareAddr: MAC(ep.Addr.Addr()),
		PeerNamespace: netlink.NsFd(int(ns)),
	}
	if err := p.h.LinkAdd(veth); err != nil {
		return fmt.Errorf("dataplane: attach task %s: add veth %s: %w", ep.TaskID, host, err)
	}
	if err := p.configureInside(ns, tmp, ep, n.Gateway); err != nil {
		p.deleteLink(host)
		return fmt.Errorf("dataplane: attach task %s: %w", ep.TaskID, err)
	}
	if err := p.h.LinkSetUp(veth); err != nil {
		p.deleteLink(host)
		return fmt.Errorf("dataplane: attach task %s: up %s: %w", ep.TaskID, host, err)
	}
	p.log.Debug("endpoint attached", "task", ep.TaskID, "network", ep.NetworkID, "addr", ep.Addr, "veth", host)
	return nil
}

// configureInside names the container end, gives it its address and
// brings it and lo up.
func (p *Plane) configureInside(ns netns.NsHandle, tmp string, ep Endpoint, gw netip.Addr) error {
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in the container: %w", err)
	}
	defer h.Close()
	l, err := h.LinkByName(tmp)
	if err != nil {
		return fmt.Errorf("find %s in the container: %w", tmp, err)
	}
	if err := h.LinkSetName(l, ep.IfName); err != nil {
		return fmt.Errorf("rename %s to %s: %w", tmp, ep.IfName, err)
	}
	if err := h.AddrAdd(l, &netlink.Addr{IPNet: ipNet(ep.Addr)}); err != nil {
		return fmt.Errorf("address %s on %s: %w", ep.Addr, ep.IfName, err)
	}
	if err := h.LinkSetUp(l); err != nil {
		return fmt.Errorf("up %s: %w", ep.IfName, err)
	}
	if ep.DefaultRoute {
		if err := h.RouteAdd(&netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("up lo: %w", err)
		}
	}
	return nil
}

// Detach removes ep's veth (both ends); detaching what is not there is a
// no-op, so a task's end may detach whatever it had.
func (p *Plane) Detach(ep Endpoint) error {
	if err := p.deleteLink(p.hostName(ep)); err != nil {
		return fmt.Errorf("dataplane: detach task %s from %s: %w", ep.TaskID, ep.NetworkID, err)
	}
	return nil
}

func (p *Plane) deleteLink(name string) error {
	l, err := p.h.LinkByName(name)
	if err != nil {
		return nil
	}
	if err := p.h.LinkDel(l); err != nil && !isNotFound(err) {
		return err
	}
	return nil
}
