package dataplane

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
)

// Published ports answer on the node's 127.0.0.1 too, as Docker's and
// kube-proxy's do: `curl 127.0.0.1:8080` on a node is the first thing a
// user tries. The output hook's DNAT (publish.go) already matches
// 127.0.0.1, but the kernel refuses to route a packet whose source is
// 127.0.0.0/8 out of any device without route_localnet, and refuses one
// arriving with a 127.0.0.0/8 destination the same way (the reply, once
// un-NATed). So:
//   - route_localnet is on for berth's own bridges only, where the local
//     tasks are, and the loopback hop's first end (hop.go); never on
//     "all" nor the underlay, where the LAN is;
//   - what leaves a bridge from 127.0.0.0/8 is masqueraded to the
//     network's gateway, so the task answers the node, not its own lo;
//   - route_localnet on a bridge lets whatever is on that bridge send to
//     127.0.0.0/8 through its gateway, and reach services the node binds
//     to 127.0.0.1 only: CVE-2020-8558, opened by kube-proxy's
//     route_localnet=1 on all interfaces. The chain below closes it as
//     kube-proxy's fix does (`! -s 127.0.0.0/8 -d 127.0.0.0/8 -m
//     conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP`), stricter:
//     a packet that did not arrive on lo and is to 127.0.0.0/8 is dropped
//     unless its connection was DNATed (a published port's, whose replies
//     are un-NATed to 127.0.0.1 here), and one from 127.0.0.0/8 is dropped
//     outright. Established connections get no pass: a container could
//     otherwise forge a packet into the node's own loopback connections.
//
// With the task on another node (ingress) the reply would come back on
// the underlay, where it may not be un-NATed to 127.0.0.1 without
// route_localnet there (what CVE-2020-8558 was): such connections take
// the loopback hop instead (hop.go).

// loopback is 127.0.0.0/8.
var loopback = netip.MustParsePrefix("127.0.0.0/8")

// loopbackIfindex is lo's interface index, the same in every network
// namespace (the kernel's LOOPBACK_IFINDEX).
const loopbackIfindex = 1

// addLocalnetGuard adds the chain, made if missing, emptied and filled,
// that drops what reaches the node's 127.0.0.0/8 from anywhere but lo
// and is not a published port's connection.
func addLocalnetGuard(c *nftables.Conn, t *nftables.Table) {
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "localnet", Table: t, Type: nftables.ChainTypeFilter,
		// After the DNAT of published ports (dstnat, -100): their replies
		// are un-NATed to 127.0.0.1 there.
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.FlushChain(ch)
	notLo := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(loopbackIfindex)},
	}
	drop := []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(notLo, match(12, loopback, expr.CmpOpEq), drop)})
	// Accept first, drop after: an untracked packet matches no ct status
	// and so falls to the drop.
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(notLo, match(16, loopback, expr.CmpOpEq), dnatted(),
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}})})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: slices.Concat(notLo, match(16, loopback, expr.CmpOpEq), drop)})
}

// masqLoopback masquerades what leaves a device other than lo from
// 127.0.0.0/8 (only our bridges let it): a node's own client of a
// published port, DNATed to a local task.
func masqLoopback() []expr.Any {
	return slices.Concat(match(12, loopback, expr.CmpOpEq), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIF, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(loopbackIfindex)},
		&expr.Masq{},
	})
}

// setRouteLocalnet turns route_localnet on for dev (a bridge of ours, or
// the hop's first end), in the Plane's namespace. The setting goes with
// the device.
func (p *Plane) setRouteLocalnet(dev string) error {
	if err := p.sysctl(fmt.Sprintf("/proc/sys/net/ipv4/conf/%s/route_localnet", dev), "1"); err != nil {
		return fmt.Errorf("route_localnet on %s: %w", dev, err)
	}
	return nil
}
