package dataplane

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A service's virtual IP is balanced inside each client container's own
// network namespace, as Swarm does (it puts IPVS in every sandbox), not
// on the node: a connection to the VIP is DNATed in the container's
// output hook, before it leaves, so
//   - the reply is un-NATed by the client's own conntrack, whatever path
//     it takes back (bridged from a local task, or over VXLAN from another
//     node); on the node the reply is bridged and would bypass the host's
//     conntrack wherever br_netfilter is off;
//   - a task reaching its own service and drawing itself routes locally
//     (no hairpin masquerade, no martian source);
//   - the VIP needs no address or ARP entry anywhere: the container sends
//     to the backend's MAC from the first packet.
// The cost is one table per container on the network, rewritten (one
// netlink batch each) when the service's ready tasks change, and
// connection tracking in the container, which the NAT chain turns on
// for every flow there. Only flows with the overlay at the other end can
// need it (a VIP connection's packets, and its replies from a backend),
// so the raw-priority chains exempt all others, and those with the
// network's gateway (the node's DNS, the node itself): a container
// serving clients through a published port, or reaching the outside,
// creates no entry in its own table per connection and looks none up per
// packet (the node tracks them already). The test is the whole subnet,
// not the VIPs and their current backends: a backend leaving the map
// still answers the connections it has, and an untracked reply would
// not be translated back from the backend to the VIP (the client's
// socket would never see it). ICMP stays tracked, so that an error
// about a VIP connection is translated back.

// VIP is a service's virtual IP on a network and the addresses, on that
// network, of its tasks that may take connections now.
type VIP struct {
	ServiceID string
	Addr      netip.Addr
	Backends  []netip.Addr
}

// SetVIPs writes the VIPs a container reaches into the container whose
// network namespace is at nsPath (such as /proc/PID/ns/net): its table,
// named with the Plane's prefix, is replaced whole in one atomic netlink
// batch, so a connection sees either the old backends or the new ones.
// A new connection to a VIP goes to one of its backends at random
// (`dnat to numgen random mod N map @vip-…`, kube-proxy's nftables way); a
// VIP without backends is refused at once (ICMP port unreachable), never
// sent to a task known dead. No VIPs removes the table.
func (p *Plane) SetVIPs(nsPath string, vips []VIP) error {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	nc, err := p.vipConn(nsPath)
	if err != nil {
		return fmt.Errorf("dataplane: VIPs in %s: %w", nsPath, err)
	}
	c := nc.c
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: p.prefix}
	if len(vips) == 0 || nc.stale {
		c.AddTable(t) // so that the delete finds one
		c.DelTable(t)
	}
	if len(vips) > 0 {
		if err := addVIPs(c, t, vips, p.networksOf(vips), newMaps(c, t, nc.stale)); err != nil {
			return fmt.Errorf("dataplane: VIPs in %s: %w", nsPath, err)
		}
	}
	if err := c.Flush(); err != nil {
		p.releaseLocked(nsPath) // start the next write on a new socket
		return fmt.Errorf("dataplane: VIPs in %s: %w", nsPath, err)
	}
	nc.stale = false
	return nil
}

// networksOf lists the networks built here that vips are on.
func (p *Plane) networksOf(vips []VIP) []Network {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []Network
	for _, n := range p.nets {
		if slices.ContainsFunc(vips, func(v VIP) bool { return n.Subnet.Contains(v.Addr) }) {
			out = append(out, n.Network)
		}
	}
	slices.SortFunc(out, func(a, b Network) int { return a.Subnet.Addr().Compare(b.Subnet.Addr()) })
	return out
}

// vipChains are the chains addVIPs makes.
var vipChains = []string{"vip", "vip-in", "vip-out"}

// nsConn is a netlink socket kept open in a container's namespace.
type nsConn struct {
	id string // the namespace's device and inode
	c  *nftables.Conn
	// stale says the container's table has chains addVIPs does not make
	// (an earlier agent's): the next write makes the table anew.
	stale bool
}

// vipConn returns the socket kept open in the namespace at nsPath, making
// one if there is none, or if the one there is belongs to a namespace
// that the path no longer names (the PID was reused). Sockets are kept:
// closing one costs ~10 ms (the kernel waits for an RCU grace period).
func (p *Plane) vipConn(nsPath string) (*nsConn, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	id := ns.UniqueId()
	if cur := p.vns[nsPath]; cur != nil && cur.id == id {
		return cur, nil
	}
	p.releaseLocked(nsPath)
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	nc := &nsConn{id: id, c: c}
	// A container met for the first time may hold a table an earlier
	// agent wrote, with chains this one no longer makes (their rules
	// would go on running): look once per socket.
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		c.CloseLasting()
		return nil, fmt.Errorf("nftables: list chains: %w", err)
	}
	for _, ch := range chains {
		nc.stale = nc.stale || (ch.Table.Name == p.prefix && !slices.Contains(vipChains, ch.Name))
	}
	p.vns[nsPath] = nc
	return nc, nil
}

// ReleaseVIPs closes the socket SetVIPs keeps open in the container at
// nsPath (it holds the namespace alive): call it when the container ends.
func (p *Plane) ReleaseVIPs(nsPath string) {
	p.vmu.Lock()
	defer p.vmu.Unlock()
	p.releaseLocked(nsPath)
}

func (p *Plane) releaseLocked(nsPath string) {
	if cur := p.vns[nsPath]; cur != nil {
		cur.c.CloseLasting()
		delete(p.vns, nsPath)
	}
}

// addVIPs adds to c's batch the table and its chains, made if missing
// and emptied, and their rules. The chains are kept rather than the table
// made anew: deleting a base chain unregisters its hook, which waits for
// an RCU grace period (tens of ms on a busy host) on every update.
func addVIPs(c *nftables.Conn, t *nftables.Table, vips []VIP, nets []Network, m *maps) error {
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	dnat := c.AddChain(&nftables.Chain{Name: vipChains[0], Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	in := c.AddChain(&nftables.Chain{Name: vipChains[1], Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: vipChains[2], Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	for _, ch := range []*nftables.Chain{dnat, in, out} {
		c.FlushChain(ch)
	}
	// The NAT chain also makes the kernel run NAT at every hook of this
	// namespace (nf_nat registers them all for the first chain), so a
	// DNATed connection whose translated tuple another connection still
	// holds in conntrack (a direct connection to the same task from the
	// same client port, in TIME_WAIT) gets a fresh source port at
	// postrouting, rather than a SYN dropped at confirmation or met by the
	// task's TIME_WAIT socket with another timestamp clock (PAWS): either
	// costs the client a 1 s retransmission. TestVIP checks none happens.
	// (The direct connection is tracked too: its task is a backend.)
	vips = slices.Clone(vips)
	slices.SortFunc(vips, func(a, b VIP) int { return a.Addr.Compare(b.Addr) })
	for _, v := range vips {
		if !v.Addr.Is4() {
			return fmt.Errorf("service %s: VIP %s is not IPv4", v.ServiceID, v.Addr)
		}
		daddr := addrIs(16, v.Addr)
		if len(v.Backends) == 0 {
			c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: append(daddr,
				&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3})})
			continue
		}
		pick, err := m.pick("vip-"+hex4(v.Addr), 1, v.Backends)
		if err != nil {
			return fmt.Errorf("service %s: %w", v.ServiceID, err)
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: dnat, Exprs: slices.Concat(daddr, pick,
			[]expr.Any{&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1}})})
	}
	addUntracked(c, in, out, nets)
	m.dropUnused()
	return nil
}

// addUntracked adds to the raw chains in (prerouting) and out (output)
// the rules that exempt from connection tracking every flow but ICMP
// whose other end is not on nets, or is a gateway of theirs: the source
// coming in, the destination going out.
func addUntracked(c *nftables.Conn, in, out *nftables.Chain, nets []Network) {
	untracked := []expr.Any{&expr.Notrack{}}
	tracked := []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}
	for _, r := range []struct {
		ch     *nftables.Chain
		offset uint32
	}{{in, 12}, {out, 16}} {
		for _, n := range nets {
			c.AddRule(&nftables.Rule{Table: r.ch.Table, Chain: r.ch, Exprs: slices.Concat(notICMP(), addrIs(r.offset, n.Gateway), untracked)})
			c.AddRule(&nftables.Rule{Table: r.ch.Table, Chain: r.ch, Exprs: slices.Concat(match(r.offset, n.Subnet, expr.CmpOpEq), tracked)})
		}
		c.AddRule(&nftables.Rule{Table: r.ch.Table, Chain: r.ch, Exprs: slices.Concat(notICMP(), untracked)})
	}
}

// notICMP matches packets other than ICMP.
func notICMP() []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_ICMP}},
	}
}

// hex4 names an IPv4 address in 8 hex digits, for set names.
func hex4(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
}
