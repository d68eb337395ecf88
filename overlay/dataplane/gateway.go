package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
)

// The node is each network's gateway: the network's bridge holds the
// gateway address (the same on every node, answered locally, never over
// VXLAN since the VXLAN device has no neighbour entry for it), containers
// route everything else through it, and the node masquerades what leaves
// a network, as Docker's docker_gwbridge does. Routing between two
// networks through the node is dropped, so networks stay isolated. The
// rules live in one nftables table named by the prefix, with those that
// publish ports (publish.go), rebuilt whole (in one atomic batch) whenever
// the networks or the published ports change.

// ruleSet rewrites the table for the networks built, the ports published
// and the devices with route_localnet now, in one batch; with none, it
// removes the table. The table and its chains are kept and emptied rather
// than made anew (deleting a base chain waits for an RCU grace period),
// but for the base chains that every packet through their hooks would
// pay for, which exist only while they have work: isolation, the
// localnet guard, publishing. fresh deletes the table first, dropping
// whatever else an earlier agent left in it.
func (p *Plane) ruleSet(fresh bool) error {
	nets := make([]Network, 0, len(p.nets))
	for _, n := range p.nets {
		nets = append(nets, n.Network)
	}
	slices.SortFunc(nets, func(a, b Network) int { return int(a.VNI) - int(b.VNI) })
	c, err := p.hostConn()
	if err != nil {
		return err
	}
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: p.prefix}
	guard, publishing := len(p.localnet) > 0, len(p.pubs) > 0
	empty := len(nets) == 0 && !publishing && !guard
	if fresh || empty {
		c.AddTable(t) // so that the delete below finds one
		c.DelTable(t)
	}
	isolating := false
	if !empty {
		hop0, hop1 := "", ""
		if p.hop {
			hop0, hop1 = p.hopNames()
		}
		isolating = hop0 != "" || len(nets) > 1
		addNetworkRules(c, t, nets, hop0)
		addIsolation(c, t, nets, hop0, isolating, p.isolating && !fresh)
		addLocalnetGuard(c, t, guard, p.guarded && !fresh)
		addNotrack(c, t, nets, p.underlay)
		if err := addPublished(c, t, p.pubs, newMaps(c, t, fresh), hop1, p.publishing && !fresh); err != nil {
			return fmt.Errorf("nftables table %s: %w", p.prefix, err)
		}
	}
	if err := c.Flush(); err != nil {
		p.host.CloseLasting() // start the next batch on a new socket
		p.host = nil
		return fmt.Errorf("nftables table %s: %w", p.prefix, err)
	}
	p.isolating, p.guarded, p.publishing = isolating, guard, publishing
	return nil
}

// hostConn is the socket kept open in the Plane's namespace (p.mu held).
func (p *Plane) hostConn() (*nftables.Conn, error) {
	if p.host == nil {
		c, err := p.nft()
		if err != nil {
			return nil, err
		}
		p.host = c
	}
	return p.host, nil
}

// addNetworkRules adds the table, made if missing, and the networks'
// masquerade chain, emptied and filled: masquerade of what leaves a
// network, SNAT of what leaves by the loopback hop (hop0, when built),
// and of a published port's connection from a container to a task of its
// own network (hairpin): without it the task would answer the container
// straight over the bridge, from its own address, which the container
// does not expect.
func addNetworkRules(c *nftables.Conn, t *nftables.Table, nets []Network, hop0 string) {
	c.AddTable(t)
	nat := c.AddChain(&nftables.Chain{Name: "masquerade", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.FlushChain(nat)
	masq := []expr.Any{&expr.Masq{}}
	if hop0 != "" {
		// Before masqLoopback, which would take it too.
		c.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: slices.Concat(ifname(expr.MetaKeyOIFNAME, hop0), snat(hopSNAT))})
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: masqLoopback()})
	for _, n := range nets {
		c.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: slices.Concat(
			match(12, n.Subnet, expr.CmpOpEq), match(16, n.Subnet, expr.CmpOpNeq), masq)})
		c.AddRule(&nftables.Rule{Table: t, Chain: nat, Exprs: slices.Concat(
			dnatted(), match(12, n.Subnet, expr.CmpOpEq), match(16, n.Subnet, expr.CmpOpEq), masq)})
	}
}

// addIsolation makes the forward chain (want), emptied and filled, or
// deletes it (had: the table has it). It drops what the loopback hop's
// first end (hop0, when built) would forward, and what one network sends
// another through the node. It exists only while it has a rule to hold:
// a base chain costs every packet through its hook, rules or none, and
// under br_netfilter that is every frame a bridge carries. The rules
// between networks, one per pair, meet only a connection's first packet:
// packets of connections already let through, and frames bridged within
// a network (untracked, notrack.go), are accepted before them.
func addIsolation(c *nftables.Conn, t *nftables.Table, nets []Network, hop0 string, want, had bool) {
	accept := nftables.ChainPolicyAccept
	fwd := &nftables.Chain{Name: "isolate", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	if !want {
		if had {
			c.FlushChain(fwd)
			c.DelChain(fwd)
		}
		return
	}
	c.AddChain(fwd)
	c.FlushChain(fwd)
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	if hop0 != "" {
		// hop0 carries only the node's own connections and their
		// replies, none forwarded: anything else sent to the hop's
		// addresses would circle through the pair.
		for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
			c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: slices.Concat(ifname(key, hop0), drop)})
		}
	}
	if len(nets) < 2 {
		return
	}
	known := expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED | expr.CtStateBitUNTRACKED
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(known), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	for _, n := range nets {
		for _, m := range nets {
			if m.ID != n.ID {
				c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: slices.Concat(
					match(12, n.Subnet, expr.CmpOpEq), match(16, m.Subnet, expr.CmpOpEq), drop)})
			}
		}
	}
}

// dnatted matches connections whose destination was translated.
func dnatted() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(0x20), Xor: binaryutil.NativeEndian.PutUint32(0)}, // IPS_DST_NAT
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}

// match compares the IPv4 address at offset (12 source, 16 destination)
// of the network header, masked to sub's prefix, with sub.
func match(offset uint32, sub netip.Prefix, op expr.CmpOp) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: net.CIDRMask(sub.Bits(), 32), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: sub.Masked().Addr().AsSlice()},
	}
}

// nft is an nftables connection in the Plane's namespace.
func (p *Plane) nft() (*nftables.Conn, error) {
	opts := []nftables.ConnOption{nftables.AsLasting()}
	if p.ns != nil {
		opts = append(opts, nftables.WithNetNSFd(int(*p.ns)))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// enableForwarding turns on IPv4 forwarding in the Plane's namespace: the
// node routes its networks' traffic out.
func (p *Plane) enableForwarding() error {
	if err := p.sysctl("/proc/sys/net/ipv4/ip_forward", "1"); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return nil
}

// sysctl writes value to the file at path under /proc/sys/net, in the
// Plane's namespace (the namespace of the thread that opens it).
func (p *Plane) sysctl(path, value string) error {
	write := func() error {
		return os.WriteFile(path, []byte(value+"\n"), 0o644)
	}
	if p.ns == nil {
		return write()
	}
	errc := make(chan error, 1)
	go func() {
		// The thread is left locked: it dies with this goroutine rather
		// than go back to the pool inside another namespace.
		runtime.LockOSThread()
		if err := netns.Set(*p.ns); err != nil {
			errc <- err
			return
		}
		errc <- write()
	}()
	return <-errc
}
