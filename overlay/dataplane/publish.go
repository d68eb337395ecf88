package dataplane

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Published ports are DNAT rules in the node's table, in the kernel: no
// process of ours sits in the data path (Docker's userland proxy did, at
// a third of native throughput).
//
// The routing mesh (ingress mode) does not use an "ingress" overlay
// network as Swarm does. A connection to a published port of a node
//   - that runs ready tasks of the service goes to one of them, DNAT only:
//     the task sees the client's own address (Swarm SNATs every ingress
//     connection, moby#25526), and the reply leaves through this node's
//     conntrack since the task's default route is this node;
//   - that runs none is DNATed to the same port of a node that does, and
//     SNATed to this node's address (masquerade): the next node treats it
//     as a client of its own, and its reply comes back to this node by
//     plain routing. No overlay, no per-node ingress address, no extra
//     interface in every task; the hop is the underlay itself, unencapsulated.
// A connection one node forwarded is never forwarded again, however
// many nodes disagree about where the service runs (mesh.go); with no
// task anywhere nothing answers (the kernel resets the connection). Host
// mode publishes only where a task runs, to the tasks of that node.

// PublishedPort is a port a service publishes.
type PublishedPort struct {
	// Protocol is unix.IPPROTO_TCP or unix.IPPROTO_UDP.
	Protocol uint8
	// Port is the port on the node; Target the one in the container.
	Port, Target uint16
	// Host publishes the port only on nodes running a task of the
	// service (mode=host); otherwise on every node (ingress).
	Host bool
}

// Published is a service's published ports as this node serves them.
type Published struct {
	ServiceID string
	Ports     []PublishedPort
	// Local are the addresses of this node's ready tasks of the service.
	Local []netip.Addr
	// Remote are the underlay addresses of other nodes that run ready
	// tasks of the service.
	Remote []netip.Addr
}

// SetPublished replaces the services whose ports this node publishes and
// rewrites the node's table (one atomic batch).
func (p *Plane) SetPublished(pubs []Published) error {
	for _, pub := range pubs {
		if err := pub.check(); err != nil {
			return fmt.Errorf("dataplane: publish service %s: %w", pub.ServiceID, err)
		}
	}
	pubs = slices.Clone(pubs)
	slices.SortFunc(pubs, func(a, b Published) int { return cmp.Compare(a.ServiceID, b.ServiceID) })
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pubs = pubs
	if err := p.hopFor(); err != nil {
		return fmt.Errorf("dataplane: publish: %w", err)
	}
	if err := p.ruleSetLocalnet(); err != nil {
		return fmt.Errorf("dataplane: publish: %w", err)
	}
	return nil
}

// hopFor makes forwarding and the loopback hop ready for the ports
// published, or removes the hop when there are none (p.mu held).
// Forwarding is turned on with the hop, not on every call: SetPublished
// runs whenever any service's tasks change.
func (p *Plane) hopFor() error {
	if len(p.pubs) == 0 {
		if !p.hop {
			return nil
		}
		return p.removeHop()
	}
	if p.hop {
		return nil
	}
	if err := p.enableForwarding(); err != nil {
		return err
	}
	return p.ensureHop()
}

func (pub Published) check() error {
	for _, pt := range pub.Ports {
		if pt.Protocol != unix.IPPROTO_TCP && pt.Protocol != unix.IPPROTO_UDP {
			return fmt.Errorf("port %d: protocol %d is neither TCP nor UDP", pt.Port, pt.Protocol)
		}
		if pt.Port == 0 || pt.Target == 0 {
			return fmt.Errorf("port %d->%d: a port is 0; publish the port given to it", pt.Port, pt.Target)
		}
	}
	for _, a := range slices.Concat(pub.Local, pub.Remote) {
		if !a.Is4() {
			return fmt.Errorf("address %s is not IPv4", a)
		}
	}
	return nil
}

// addPublished makes the publishing chains (with ports published),
// emptied and filled, or deletes them (had: the table has them): DNAT in
// prerouting (clients elsewhere) and output (the node itself) for what
// is addressed to this node, masquerade of what it forwards, and the
// loop guard's marking (mesh.go), a base chain every packet leaving the
// node would cross.
func addPublished(c *nftables.Conn, t *nftables.Table, pubs []Published, m *maps, hop1 string, had bool) error {
	defer m.dropUnused() // after the chains that used them are emptied
	if len(pubs) == 0 {
		if had {
			removePublished(c, t)
		}
		return nil
	}
	ports := addPublishChains(c, t, hop1)
	for _, pub := range pubs {
		for _, pt := range pub.Ports {
			rules, err := portRules(m, pub, pt, hop1 != "")
			if err != nil {
				return fmt.Errorf("service %s port %d: %w", pub.ServiceID, pt.Port, err)
			}
			for _, exprs := range rules {
				c.AddRule(&nftables.Rule{Table: t, Chain: ports, Exprs: exprs})
			}
		}
	}
	return nil
}

// addPublishChains makes the publishing chains, emptied, and fills all
// but ports, which it returns.
func addPublishChains(c *nftables.Conn, t *nftables.Table, hop1 string) *nftables.Chain {
	ports := c.AddChain(&nftables.Chain{Name: "ports", Table: t})
	c.FlushChain(ports)
	for _, hook := range []struct {
		name string
		num  *nftables.ChainHook
	}{{"publish", nftables.ChainHookPrerouting}, {"publish-out", nftables.ChainHookOutput}} {
		ch := c.AddChain(&nftables.Chain{Name: hook.name, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: hook.num, Priority: nftables.ChainPriorityNATDest})
		c.FlushChain(ch)
		if hop1 != "" && hook.name == "publish" {
			// What comes out of the loopback hop is forwarded (hop.go).
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(ifname(expr.MetaKeyIIFNAME, hop1), addrIs(16, hopDst),
				[]expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: ports.Name}})})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(toLocal(),
			&expr.Verdict{Kind: expr.VerdictJump, Chain: ports.Name})})
	}
	masq := c.AddChain(&nftables.Chain{Name: "publish-masq", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.FlushChain(masq)
	c.AddRule(&nftables.Rule{Table: t, Chain: masq, Exprs: append(hasConnMark(meshMark), &expr.Masq{})})
	addMeshDSCP(c, t)
	return ports
}

// removePublished deletes the publishing chains, the base ones first:
// their rules jump to ports.
func removePublished(c *nftables.Conn, t *nftables.Table) {
	for _, name := range []string{"publish", "publish-out", "publish-masq", meshDSCPChain, "ports"} {
		ch := &nftables.Chain{Name: name, Table: t}
		c.FlushChain(ch)
		c.DelChain(ch)
	}
}

// portRules are the rules for one published port: to a local task, else
// (ingress) to another node, directly or, for the node's own 127.0.0.0/8
// clients, by the loopback hop; else none.
func portRules(m *maps, pub Published, pt PublishedPort, hop bool) ([][]expr.Any, error) {
	port := portIs(pt.Protocol, pt.Port)
	// One map per service and port: its rules' maps are named after them.
	name := fmt.Sprintf("%s-%d-%d", hashName(pub.ServiceID), pt.Protocol, pt.Port)
	switch {
	case len(pub.Local) > 0:
		pick, err := m.pick("local-"+name, 1, pub.Local)
		if err != nil {
			return nil, err
		}
		return [][]expr.Any{slices.Concat(port, pick, dnat(pt.Target))}, nil
	case !pt.Host && len(pub.Remote) > 0:
		pick, err := m.pick("remote-"+name, 1, pub.Remote)
		if err != nil {
			return nil, err
		}
		rules := [][]expr.Any{slices.Concat(port, match(12, loopback, expr.CmpOpNeq), notForwarded(),
			setConnMark(meshMark), pick, dnat(pt.Port))}
		if hop {
			rules = append(rules, slices.Concat(port, match(12, loopback, expr.CmpOpEq),
				[]expr.Any{&expr.Immediate{Register: 1, Data: hopDst.AsSlice()}}, dnat(pt.Port)))
		}
		return rules, nil
	}
	return nil, nil
}

// dnat translates the destination to the address in register 1 and port.
func dnat(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	}
}
