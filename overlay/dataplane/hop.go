package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
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
//	client 127.0.0.1 → DNAT to the other node, marked (hopMark) → routed
//	by the mark (table hopTable) out of the pair's first end (hop0,
//	route_localnet), SNATed to hopSNAT → in at the other end (hop1): a new
//	connection to conntrack, forwarded like any other (masqueraded, DSCP
//	marked) → the other node.
//	reply → un-masqueraded to hopSNAT → routed out of hop1 → in at hop0,
//	un-NATed to 127.0.0.1 there, where route_localnet lets it in.
//
// Neither end has an address: the next hops are permanent neighbour
// entries, so nothing answers on the pair and nothing outside uses it.
// The pair, its route, its routing rule and its rules are made with the
// first published port and go with the last.

const (
	// hopMark marks a 127.0.0.0/8 client's connection sent through the
	// hop, and each of its packets, for the routing rule to pick them.
	hopMark = 0x00200000
	// hopTable is the routing table of marked packets: out of hop0.
	hopTable = 0xb0e
	// hopRulePriority puts the routing rule before the main table's.
	hopRulePriority = 3100
)

var (
	hopNext = netip.MustParseAddr("169.254.77.2") // hop0's next hop: hop1
	hopSNAT = netip.MustParseAddr("169.254.77.3") // the client's address past hop0; hop1 routes it back
)

func (p *Plane) hopNames() (string, string) { return p.name('l', "0"), p.name('l', "1") }

// ensureHop builds the pair once (p.mu held).
func (p *Plane) ensureHop() error {
	if p.hop {
		return nil
	}
	p.removeHop()
	in, out := p.hopNames()
	if err := p.h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: in, MTU: p.uplink.Attrs().MTU}, PeerName: out}); err != nil {
		return fmt.Errorf("loopback hop: add veth %s: %w", in, err)
	}
	if err := p.buildHop(in, out); err != nil {
		p.removeHop()
		return fmt.Errorf("loopback hop: %w", err)
	}
	p.hop = true
	return nil
}

func (p *Plane) buildHop(in, out string) error {
	l0, err := p.h.LinkByName(in)
	if err != nil {
		return err
	}
	l1, err := p.h.LinkByName(out)
	if err != nil {
		return err
	}
	for path, v := range map[string]string{
		"/proc/sys/net/ipv4/conf/" + in + "/route_localnet": "1",
		"/proc/sys/net/ipv4/conf/" + in + "/rp_filter":      "0", // replies come from the other node's address
		"/proc/sys/net/ipv4/conf/" + out + "/rp_filter":     "0",
	} {
		if err := p.sysctl(path, v); err != nil {
			return err
		}
	}
	for _, l := range []netlink.Link{l0, l1} {
		if err := p.h.LinkSetUp(l); err != nil {
			return fmt.Errorf("up %s: %w", l.Attrs().Name, err)
		}
	}
	neighs := []*netlink.Neigh{
		{LinkIndex: l0.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: hopNext.AsSlice(), HardwareAddr: l1.Attrs().HardwareAddr},
		{LinkIndex: l1.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT, IP: hopSNAT.AsSlice(), HardwareAddr: l0.Attrs().HardwareAddr},
	}
	for _, n := range neighs {
		if err := p.h.NeighSet(n); err != nil {
			return fmt.Errorf("neighbour %s: %w", n.IP, err)
		}
	}
	routes := []*netlink.Route{
		{LinkIndex: l0.Attrs().Index, Table: hopTable, Gw: hopNext.AsSlice(), Flags: int(netlink.FLAG_ONLINK)},
		{LinkIndex: l1.Attrs().Index, Dst: ipNet(netip.PrefixFrom(hopSNAT, 32)), Scope: netlink.SCOPE_LINK},
	}
	for _, r := range routes {
		if err := p.h.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s: %w", r, err)
		}
	}
	if err := p.h.RuleAdd(hopRule()); err != nil {
		return fmt.Errorf("routing rule: %w", err)
	}
	return nil
}

// hopRule routes the marked packets the node sends (iif lo) by hopTable.
func hopRule() *netlink.Rule {
	r := netlink.NewRule()
	r.Family, r.Priority, r.Table = netlink.FAMILY_V4, hopRulePriority, hopTable
	mask := uint32(hopMark)
	r.Mark, r.Mask, r.IifName = hopMark, &mask, "lo"
	return r
}

// removeHop deletes the pair (its routes and neighbours go with it) and
// the routing rule, whoever made them (p.mu held).
func (p *Plane) removeHop() error {
	p.hop = false
	var errs []error
	in, _ := p.hopNames()
	if l, err := p.h.LinkByName(in); err == nil {
		if err := p.h.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete %s: %w", in, err))
		}
	}
	for {
		err := p.h.RuleDel(hopRule())
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("delete the loopback hop's routing rule: %w", err))
			break
		}
	}
	return errors.Join(errs...)
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

// setPacketMark ORs bit into the packet's mark.
func setPacketMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// addHopMark adds the chain, made if missing, emptied and filled, that
// marks every packet of a connection sent through the hop, so that the
// NAT hook routes each one by hopTable, not only the first.
func addHopMark(c *nftables.Conn, t *nftables.Table) {
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "hop-mark", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	c.FlushChain(ch)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(hasConnMark(hopMark), setPacketMark(hopMark))})
}

// snat translates the source to a.
func snat(a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a.AsSlice()},
		&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1},
	}
}
