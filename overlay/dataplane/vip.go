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
// netlink batch each) when the service's ready tasks change.

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
	c, err := p.vipConn(nsPath)
	if err != nil {
		return fmt.Errorf("dataplane: VIPs in %s: %w", nsPath, err)
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: p.prefix}
	if len(vips) == 0 {
		c.AddTable(t) // so that the delete finds one
		c.DelTable(t)
	} else if err := addVIPs(c, t, vips, newMaps(c, t, false)); err != nil {
		return fmt.Errorf("dataplane: VIPs in %s: %w", nsPath, err)
	}
	if err := c.Flush(); err != nil {
		p.releaseLocked(nsPath) // start the next write on a new socket
		return fmt.Errorf("dataplane: VIPs in %s: %w", nsPath, err)
	}
	return nil
}

// nsConn is a netlink socket kept open in a container's namespace.
type nsConn struct {
	id string // the namespace's device and inode
	c  *nftables.Conn
}

// vipConn returns the socket kept open in the namespace at nsPath, making
// one if there is none, or if the one there is belongs to a namespace
// that the path no longer names (the PID was reused). Sockets are kept:
// closing one costs ~10 ms (the kernel waits for an RCU grace period).
func (p *Plane) vipConn(nsPath string) (*nftables.Conn, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	id := ns.UniqueId()
	if cur := p.vns[nsPath]; cur != nil && cur.id == id {
		return cur.c, nil
	}
	p.releaseLocked(nsPath)
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(ns)))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	p.vns[nsPath] = &nsConn{id: id, c: c}
	return c, nil
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
func addVIPs(c *nftables.Conn, t *nftables.Table, vips []VIP, m *maps) error {
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	dnat := c.AddChain(&nftables.Chain{Name: "vip", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	refuse := c.AddChain(&nftables.Chain{Name: "vip-refuse", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.FlushChain(dnat)
	c.FlushChain(refuse)
	// The NAT chain also makes the kernel run NAT at every hook of this
	// namespace (nf_nat registers them all for the first chain), so a
	// DNATed connection whose translated tuple another connection still
	// holds in conntrack (a direct connection to the same task from the
	// same client port, in TIME_WAIT) gets a fresh source port at
	// postrouting, rather than a SYN dropped at confirmation or met by the
	// task's TIME_WAIT socket with another timestamp clock (PAWS): either
	// costs the client a 1 s retransmission. TestVIP checks none happens.
	vips = slices.Clone(vips)
	slices.SortFunc(vips, func(a, b VIP) int { return a.Addr.Compare(b.Addr) })
	for _, v := range vips {
		if !v.Addr.Is4() {
			return fmt.Errorf("service %s: VIP %s is not IPv4", v.ServiceID, v.Addr)
		}
		daddr := addrIs(16, v.Addr)
		if len(v.Backends) == 0 {
			c.AddRule(&nftables.Rule{Table: t, Chain: refuse, Exprs: append(daddr,
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
	m.dropUnused()
	return nil
}

// hex4 names an IPv4 address in 8 hex digits, for set names.
func hex4(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%02x%02x%02x%02x", b[0], b[1], b[2], b[3])
}
