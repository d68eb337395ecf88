package testhost

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// underlay is the range the clusters' subnets come from; each cluster takes
// one of its 512 /24s.
var underlay = netip.MustParsePrefix("198.18.0.0/15")

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// retryDump calls list until its netlink dump was not interrupted by a
// concurrent change (other tests create and delete links all the time).
func retryDump[T any](list func() ([]T, error)) ([]T, error) {
	for range 20 {
		v, err := list()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return list()
}

// makeBridge creates bridge name with address addr and sets it up. STP stays
// off, so a port that comes back up forwards at once.
func makeBridge(name string, addr netip.Prefix) (netlink.Link, error) {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: name}}
	if err := netlink.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("add bridge %s: %w", name, err)
	}
	link, err := netlink.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("find bridge %s: %w", name, err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return nil, fmt.Errorf("address bridge %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, fmt.Errorf("up bridge %s: %w", name, err)
	}
	return link, nil
}

// pickSubnet returns a /24 of the underlay that no address or route in the
// root namespace falls in, starting from one derived from the run id. The caller
// holds the lock, so two runs cannot pick the same one.
func pickSubnet(id string) (netip.Prefix, error) {
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list addresses: %w", err)
	}
	used := map[netip.Prefix]bool{}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && underlay.Contains(ip) {
			p, _ := ip.Prefix(24)
			used[p] = true
		}
	}
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list routes: %w", err)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if ip, ok := netip.AddrFromSlice(r.Dst.IP.To4()); ok && underlay.Contains(ip) {
			p, _ := ip.Prefix(24)
			used[p] = true
		}
	}
	h := fnv.New32a()
	h.Write([]byte(id))
	start := h.Sum32()
	base := binary.BigEndian.Uint32(underlay.Addr().AsSlice())
	const n = 512
	for i := range uint32(n) {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], base+((start+i)%n)<<8)
		p := netip.PrefixFrom(netip.AddrFrom4(b), 24)
		if !used[p] {
			return p, nil
		}
	}
	return netip.Prefix{}, errors.New("every /24 of 198.18.0.0/15 is in use")
}

// usedNames returns the run ids that name links, namespaces or nft tables
// now, so a new run does not reuse one.
func usedNames() (map[string]bool, error) {
	used := map[string]bool{}
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if id := runOf(l.Attrs().Name); id != "" {
			used[id] = true
		}
	}
	names, err := netnsNames()
	if err != nil {
		return nil, err
	}
	for _, n := range names {
		used[runOf(n)] = true
	}
	return used, nil
}

// deleteLinks deletes the root-namespace links whose names match; deleting a
// veth end deletes its peer too.
func deleteLinks(match func(name string) bool) error {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if !match(l.Attrs().Name) {
			continue
		}
		err := netlink.LinkDel(l)
		var nf netlink.LinkNotFoundError
		if err != nil && !errors.As(err, &nf) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("delete link %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// deleteTables deletes the nft tables whose names match.
func deleteTables(ctx context.Context, match func(name string) bool) error {
	objs, err := nftList(ctx, "tables")
	if err != nil {
		return err
	}
	var errs []error
	for _, o := range objs {
		if t := o.Table; t != nil && match(t.Name) {
			if _, err := nft(ctx, "", "delete", "table", t.Family, t.Name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
