package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// The loopback hop carries a node's own 127.0.0.0/8 client of an ingress
// port to the node running the task (localnet.go says why it needs one).
// The kernel un-NATs a reply to 127.0.0.1 only on a device with
// route_localnet, and the reply of a forwarded connection comes back on
// the underlay, which must never have it. So the connection crosses a
// veth pair whose ends are both in the node's namespace, as Docker's
// cross docker_gwbridge into its ingress sandbox:
//
//	client 127.0.0.1 → DNAT to hopDst, routed out of the pair's first
//	end (hop0, route_localnet), SNATed to hopSNAT → in at the other end
//	(hop1): a new connection to conntrack, to hopDst, which the published
//	port's rule forwards like any other (DNAT to the other node,
//	masquerade, DSCP).
//	reply → un-NATed to hopSNAT from hopDst → routed out of hop1 → in at
//	hop0, un-NATed to 127.0.0.1 there, where route_localnet lets it in.
//
// Neither end has an address: hopDst and hopSNAT are permanent neighbour
// entries on the far end, routed there by two /32 routes, so nothing
// answers on the pair, nothing outside uses it, and each end is the
// route back to the other's addresses (a strict rp_filter passes). The
// pair and its routes are made with the first published port and go
// with the last.

var (
	hopDst  = netip.MustParseAddr("169.254.77.2") // where a 127.0.0.0/8 client's connection goes first: out of hop0
	hopSNAT = netip.MustParseAddr("169.254.77.3") // the client's address past hop0: out of hop1
)

func (p *Plane) hopNames() (string, string) { return p.name('l', "0"), p.name('l', "1") }

// ensureHop builds the pair once (p.mu held). Its route_localnet is
// turned on once the table guards 127.0.0.0/8 (localnet.go).
func (p *Plane) ensureHop() error {
	if p.hop {
		return nil
	}
	p.removeHop()
	hop0, hop1 := p.hopNames()
	if err := p.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hop0, MTU: p.uplink.Attrs().MTU}, PeerName: hop1}); err != nil {
		return fmt.Errorf("loopback hop: add veth %s: %w", hop0, err)
	}
	if err := p.buildHop(hop0, hop1); err != nil {
		p.removeHop()
		return fmt.Errorf("loopback hop: %w", err)
	}
	p.hop = true
	return nil
}

func (p *Plane) buildHop(hop0, hop1 string) error {
	l0, err := p.h.LinkByName(hop0)
	if err != nil {
		return err
	}
	l1, err := p.h.LinkByName(hop1)
	if err != nil {
		return err
	}
	for _, l := range []netlink.Link{l0, l1} {
		if err := p.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("up %s: %w", l.Attrs().Name, err)
		}
	}
	// Each of the two addresses is the far end's, routed out of the near one.
	for _, e := range []struct {
		from, to netlink.Link
		addr     netip.Addr
	}{{l0, l1, hopDst}, {l1, l0, hopSNAT}} {
		n := &netlink.Neigh{LinkIndex: e.from.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
			IP: e.addr.AsSlice(), HardwareAddr: e.to.Attrs().HardwareAddr}
		if err := p.h.NeighSet(n); err != nil {
			return fmt.Errorf("neighbour %s: %w", e.addr, err)
		}
		r := &netlink.Route{LinkIndex: e.from.Attrs().Index, Dst: ipNet(netip.PrefixFrom(e.addr, 32)), Scope: netlink.SCOPE_LINK}
		if err := p.h.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s: %w", e.addr, err)
		}
	}
	return nil
}

// removeHop deletes the pair, whoever made it; its routes, neighbours
// and route_localnet go with it (p.mu held).
func (p *Plane) removeHop() error {
	p.hop = false
	hop0, _ := p.hopNames()
	if l, err := p.h.LinkByName(hop0); err == nil {
		if err := p.h.LinkDel(l); err != nil && !isNotFound(err) {
			return fmt.Errorf("delete %s: %w", hop0, err)
		}
	}
	delete(p.localnet, hop0)
	return nil
}

// ifname matches the input (iif) or output device's name.
func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, 16)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b},
	}
}

// snat translates the source to a.
func snat(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
}
