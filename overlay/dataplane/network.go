package dataplane

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

var errNoDevice = unix.ENODEV

// Network is an overlay network as a node builds it.
type Network struct {
	ID string
	// VNI is the network's VXLAN identifier, the same on every node.
	VNI uint32
	// Subnet is the network's subnet; endpoints get addresses of it.
	Subnet netip.Prefix
	// Gateway is the address of the network's bridge on every node, the
	// containers' default route.
	Gateway netip.Addr
}

// SetNetwork builds network n on this node, once: a bridge and a VXLAN
// device enslaved to it, both up. Building it again is a no-op.
func (p *Plane) SetNetwork(n Network) error {
	if n.VNI == 0 || n.VNI >= 1<<24 {
		return fmt.Errorf("dataplane: network %s: VNI %d is not a 24-bit identifier", n.ID, n.VNI)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cur := p.nets[n.ID]; cur != nil {
		if cur.VNI != n.VNI || cur.Subnet != n.Subnet {
			return fmt.Errorf("dataplane: network %s is built with VNI %d and subnet %s, not %d and %s; remove it first", n.ID, cur.VNI, cur.Subnet, n.VNI, n.Subnet)
		}
		return nil
	}
	if !n.Subnet.Contains(n.Gateway) {
		return fmt.Errorf("dataplane: network %s: gateway %s is outside subnet %s", n.ID, n.Gateway, n.Subnet)
	}
	br, vx, err := p.build(n)
	if err == nil {
		err = p.gateway(br, n)
	}
	if err != nil {
		p.deleteLinks(n.VNI)
		return fmt.Errorf("dataplane: network %s (VNI %d): %w", n.ID, n.VNI, err)
	}
	p.nets[n.ID] = &network{Network: n, bridge: br, vxlan: vx, peers: map[netip.Addr]Peer{}}
	if len(p.pubs) == 0 {
		// Cleared: a bridge adopted from an earlier agent may have it on.
		p.localnet[br.Attrs().Name] = true
	}
	if err := p.ruleSetLocalnet(); err != nil {
		return fmt.Errorf("dataplane: network %s: %w", n.ID, err)
	}
	p.log.Debug("network built", "network", n.ID, "vni", n.VNI, "bridge", br.Attrs().Name, "vxlan", vx.Attrs().Name)
	return nil
}

func (p *Plane) bridgeName(vni uint32) string { return p.name('b', fmt.Sprintf("%x", vni)) }
func (p *Plane) vxlanName(vni uint32) string  { return p.name('v', fmt.Sprintf("%x", vni)) }

// bridgeMAC is the bridge's own address, the gateway's MAC in every
// container's neighbour table, given at creation so that the kernel keeps
// it: a bridge with none takes the lowest address of its ports, and so
// changes whenever a container's veth with a lower one comes or goes
// (00:00:00:00:00:00 once the last goes). Containers keep the old one in
// their REACHABLE neighbour entry and lose their gateway (DNS, the way
// out) for up to half a minute. Locally administered (06:, never a
// container's 02:42:), and distinct per node and network: the node's
// underlay address and the VNI's low byte.
func (p *Plane) bridgeMAC(vni uint32) net.HardwareAddr {
	u := p.underlay.As16()
	return net.HardwareAddr{0x06, byte(vni), u[12], u[13], u[14], u[15]}
}

// build makes the bridge and the VXLAN device, or adopts them when an
// earlier run of the agent left them (its containers stay attached); a
// leftover that does not match is replaced.
func (p *Plane) build(n Network) (netlink.Link, netlink.Link, error) {
	if br, vx, ok := p.adopt(n); ok {
		return br, vx, nil
	}
	p.deleteLinks(n.VNI)
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: p.bridgeName(n.VNI), MTU: p.mtu, HardwareAddr: p.bridgeMAC(n.VNI)}}
	if err := p.h.LinkAdd(br); err != nil {
		return nil, nil, fmt.Errorf("add bridge %s: %w", br.Name, err)
	}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: p.vxlanName(n.VNI), MTU: p.mtu},
		VxlanId:   int(n.VNI), VtepDevIndex: p.uplink.Attrs().Index, SrcAddr: p.underlay.AsSlice(),
		Port: VXLANPort, Learning: false, Proxy: true,
	}
	if err := p.h.LinkAdd(vx); err != nil {
		return nil, nil, fmt.Errorf("add vxlan %s: %w", vx.Name, err)
	}
	if err := p.h.LinkSetMaster(vx, br); err != nil {
		return nil, nil, fmt.Errorf("enslave %s to %s: %w", vx.Name, br.Name, err)
	}
	for _, l := range []netlink.Link{vx, br} {
		if err := p.h.LinkSetUp(l); err != nil {
			return nil, nil, fmt.Errorf("up %s: %w", l.Attrs().Name, err)
		}
	}
	brl, err := p.h.LinkByName(br.Name)
	if err != nil {
		return nil, nil, err
	}
	vxl, err := p.h.LinkByName(vx.Name)
	return brl, vxl, err
}

// gateway gives the bridge the network's gateway address (kept when it
// has it) and turns on forwarding.
func (p *Plane) gateway(br netlink.Link, n Network) error {
	want := netip.PrefixFrom(n.Gateway, n.Subnet.Bits())
	addrs, err := p.h.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", br.Attrs().Name, err)
	}
	for _, a := range addrs {
		if ones, _ := a.Mask.Size(); a.IP.Equal(n.Gateway.AsSlice()) && ones == n.Subnet.Bits() {
			return p.enableForwarding()
		}
	}
	if err := p.h.AddrAdd(br, &netlink.Addr{IPNet: ipNet(want)}); err != nil {
		return fmt.Errorf("gateway %s on %s: %w", want, br.Attrs().Name, err)
	}
	return p.enableForwarding()
}

// adopt returns n's links when they exist as build would make them.
func (p *Plane) adopt(n Network) (netlink.Link, netlink.Link, bool) {
	br, err := p.h.LinkByName(p.bridgeName(n.VNI))
	if err != nil {
		return nil, nil, false
	}
	l, err := p.h.LinkByName(p.vxlanName(n.VNI))
	if err != nil {
		return nil, nil, false
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok || vx.VxlanId != int(n.VNI) || vx.MasterIndex != br.Attrs().Index || vx.Learning || !vx.Proxy ||
		!vx.SrcAddr.Equal(p.underlay.AsSlice()) {
		return nil, nil, false
	}
	return br, vx, true
}

// RemoveNetwork deletes network id's bridge and VXLAN device (and with
// them its FDB and neighbour entries). Endpoints on it must be detached
// first; removing an unknown network is a no-op.
func (p *Plane) RemoveNetwork(id string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.nets[id]
	if n == nil {
		return nil
	}
	delete(p.nets, id)
	if err := p.deleteLinks(n.VNI); err != nil {
		return fmt.Errorf("dataplane: remove network %s: %w", id, err)
	}
	delete(p.localnet, n.bridge.Attrs().Name) // gone with the bridge
	if err := p.ruleSet(false); err != nil {
		return fmt.Errorf("dataplane: remove network %s: %w", id, err)
	}
	return nil
}

func (p *Plane) deleteLinks(vni uint32) error {
	var errs []error
	for _, name := range []string{p.vxlanName(vni), p.bridgeName(vni)} {
		l, err := p.h.LinkByName(name)
		if err != nil {
			continue
		}
		if err := p.h.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
