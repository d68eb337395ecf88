package dataplane

import (
	"errors"
	"fmt"
	"io/fs"
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
//     tasks are, and the loopback hop's first end (hop.go), and only while
//     the node publishes a port; never on "all" nor the underlay, where
//     the LAN is;
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

// addLocalnetGuard makes the chain (want), emptied and filled, that
// drops what reaches the node's 127.0.0.0/8 from anywhere but lo and is
// not a published port's connection; or deletes it (had: the table has
// it). A base chain costs every packet through its hook, so it exists
// only while a device of ours may have route_localnet (Plane.localnet).
func addLocalnetGuard(c *nftables.Conn, t *nftables.Table, want, had bool) {
	accept := nftables.ChainPolicyAccept
	ch := &nftables.Chain{Name: "localnet", Table: t, Type: nftables.ChainTypeFilter,
		// After the DNAT of published ports (dstnat, -100): their replies
		// are un-NATed to 127.0.0.1 there.
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept}
	if !want {
		if had {
			c.FlushChain(ch)
			c.DelChain(ch)
		}
		return
	}
	c.AddChain(ch)
	c.FlushChain(ch)
	notLo := notLoopback(expr.MetaKeyIIF)
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
	return slices.Concat(match(12, loopback, expr.CmpOpEq), notLoopback(expr.MetaKeyOIF), []expr.Any{&expr.Masq{}})
}

// notLoopback matches packets whose input (key MetaKeyIIF) or output
// (MetaKeyOIF) device is not lo.
func notLoopback(key expr.MetaKey) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(loopbackIfindex)},
	}
}

// route_localnet is needed only while the node publishes a port: it
// lets the node's own 127.0.0.0/8 clients reach local tasks (over the
// bridges) and remote ones (over the hop). So it is on for every bridge
// and the hop while ports are published, and 0 everywhere else, and the
// guard chain exists exactly while some device of ours may have it:
// p.localnet names those devices, and the guard is in the table whenever
// it names any. Order keeps that exact: a device is named before the
// table gets the guard, the guard is in the table (p.guarded) before 1 is
// written, and a device leaves p.localnet only once 0 is written or it
// is gone, the guard leaving the table after the last. A crash at any
// point leaves no route_localnet=1 without the guard, and Sweep clears
// what an earlier agent left on the bridges it keeps before it replaces
// that agent's table.

// ruleSetLocalnet runs ruleSet with route_localnet readied before and
// turned on after (p.mu held). With ports published, every bridge and the
// hop are named for it first, so that the table gets the guard, and get
// it once the table holds the guard; with none, it is cleared everywhere
// first, and a device it could not be cleared on keeps the guard.
func (p *Plane) ruleSetLocalnet() error {
	var before error
	if len(p.pubs) == 0 {
		before = p.closeLocalnet()
	} else {
		p.nameAllLocalnet()
	}
	if err := p.ruleSet(false); err != nil {
		return errors.Join(before, err)
	}
	if len(p.pubs) == 0 {
		return before
	}
	return p.openLocalnet()
}

// nameAllLocalnet names every bridge and the hop for route_localnet.
func (p *Plane) nameAllLocalnet() {
	for _, n := range p.nets {
		p.nameLocalnet(n.bridge.Attrs().Name)
	}
	if p.hop {
		hop0, _ := p.hopNames()
		p.nameLocalnet(hop0)
	}
}

// nameLocalnet names dev for route_localnet, not yet written.
func (p *Plane) nameLocalnet(dev string) {
	if _, ok := p.localnet[dev]; !ok {
		p.localnet[dev] = false
	}
}

// openLocalnet writes route_localnet=1 on the devices named and not yet
// written, now that the table guards 127.0.0.0/8 (p.mu held).
func (p *Plane) openLocalnet() error {
	if !p.guarded {
		return fmt.Errorf("route_localnet: the table does not guard 127.0.0.0/8")
	}
	var errs []error
	for dev, on := range p.localnet {
		if on {
			continue
		}
		if err := p.setRouteLocalnet(dev, "1"); err != nil {
			errs = append(errs, err)
			continue
		}
		p.localnet[dev] = true
	}
	return errors.Join(errs...)
}

// closeLocalnet writes route_localnet=0 on every device named and
// forgets it (p.mu held); a device it fails on stays, and so keeps the
// guard. A device gone took its setting with it.
func (p *Plane) closeLocalnet() error {
	var errs []error
	for dev := range p.localnet {
		if err := p.setRouteLocalnet(dev, "0"); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		delete(p.localnet, dev)
	}
	return errors.Join(errs...)
}

// setRouteLocalnet writes route_localnet for dev (a bridge of ours, or
// the hop's first end), in the Plane's namespace. The setting goes with
// the device.
func (p *Plane) setRouteLocalnet(dev, value string) error {
	if err := p.sysctl(fmt.Sprintf("/proc/sys/net/ipv4/conf/%s/route_localnet", dev), value); err != nil {
		return fmt.Errorf("route_localnet=%s on %s: %w", value, dev, err)
	}
	return nil
}
