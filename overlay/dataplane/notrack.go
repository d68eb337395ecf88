package dataplane

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Our NAT chains switch connection tracking on in the node's namespace,
// and where br_netfilter is on (Docker and Kubernetes turn it on; a
// fresh namespace has it) every frame our bridges carry between two
// containers goes through the node's IPv4 hooks too. No rule of ours
// rewrites those flows, nor the VXLAN packets that carry them, yet
// tracking them cost a lookup per packet (3 % of the cycles of a TCP
// stream across hosts, measured with perf) and one entry in each node's
// table per container-to-container connection, a table a busy overlay
// could fill. The raw-priority chains below exempt both:
//   - a packet from a network's subnet to the same subnet, except to the
//     gateway: the node's own address on the network takes DNS queries
//     and the replies of hairpin connections, whose masquerade needs the
//     connection's entry; VIPs are translated in the client's namespace,
//     never here;
//   - VXLAN packets from and to this node's underlay address.

// addNotrack adds the raw-priority chains, made if missing, emptied and
// filled for nets.
func addNotrack(c *nftables.Conn, t *nftables.Table, nets []Network, underlay netip.Addr) {
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: "notrack-in", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: "notrack-out", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw, Policy: &accept})
	c.FlushChain(pre)
	c.FlushChain(out)
	if len(nets) == 0 {
		return
	}
	untracked := []expr.Any{&expr.Notrack{}}
	vxlan := portIs(unix.IPPROTO_UDP, VXLANPort)
	c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: slices.Concat(addrIs(16, underlay), vxlan, untracked)})
	c.AddRule(&nftables.Rule{Table: t, Chain: out, Exprs: slices.Concat(addrIs(12, underlay), vxlan, untracked)})
	for _, n := range nets {
		notGateway := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: n.Gateway.AsSlice()},
		}
		// The destination first: it rules out at once what comes from
		// outside the network or leaves it (a published port's packets).
		c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: slices.Concat(
			match(16, n.Subnet, expr.CmpOpEq), notGateway, match(12, n.Subnet, expr.CmpOpEq), untracked)})
	}
}
