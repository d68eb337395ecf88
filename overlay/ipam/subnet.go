package ipam

import (
	"fmt"
	"net/netip"
)

// Subnet hands out the addresses of one network. The network address, the
// gateway (the first host address, which the node's bridge holds) and the
// broadcast address are never handed out. Allocation rolls forward from
// the last address given, so a freed address is taken again only after
// the rest of the subnet was used: a stale peer entry for a dead task is
// unlikely to point at a new one.
type Subnet struct {
	prefix netip.Prefix
	owners map[netip.Addr]string
	next   uint64 // offset in the subnet where the next search starts
	size   uint64 // addresses in the subnet
}

// NewSubnet returns an empty Subnet over p, which must be an IPv4 prefix
// of at most /MaxMaskLen with no host bits.
func NewSubnet(p netip.Prefix) (*Subnet, error) {
	if !p.IsValid() || !p.Addr().Is4() || p.Masked() != p || p.Bits() > MaxMaskLen {
		return nil, fmt.Errorf("subnet %s: want an IPv4 CIDR of /%d or larger with no host bits", p, MaxMaskLen)
	}
	size := uint64(1) << (32 - p.Bits())
	return &Subnet{prefix: p, owners: map[netip.Addr]string{}, next: 2, size: size}, nil
}

// Prefix is the subnet.
func (s *Subnet) Prefix() netip.Prefix { return s.prefix }

// Gateway is the subnet's first host address.
func (s *Subnet) Gateway() netip.Addr { return s.at(1) }

// Free counts the addresses left to give.
func (s *Subnet) Free() int { return int(s.size) - 3 - len(s.owners) }

// Owner returns who holds a, or "".
func (s *Subnet) Owner(a netip.Addr) string { return s.owners[a] }

// Allocate gives the next free address to owner, or an error wrapping
// ErrExhausted naming the subnet.
func (s *Subnet) Allocate(owner string) (netip.Addr, error) {
	hosts := s.size - 3 // offsets 2 .. size-2
	// A full subnet fails at once: scanning every address of a /16 for
	// each of thousands of tasks that cannot fit kept the allocator busy
	// for minutes (100k tasks on the default network).
	for i := uint64(0); i < hosts && s.Free() > 0; i++ {
		off := 2 + (s.next-2+i)%hosts
		a := s.at(off)
		if _, taken := s.owners[a]; !taken {
			s.owners[a] = owner
			s.next = off + 1
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("subnet %s has no free address (%d in use): %w; remove tasks or services from the network, or use a larger subnet", s.prefix, len(s.owners), ErrExhausted)
}

// Reserve records that owner holds a (rebuilding from the store). It is a
// no-op when owner holds a already, and an error when a is outside the
// subnet, is reserved, or someone else holds it.
func (s *Subnet) Reserve(a netip.Addr, owner string) error {
	if !s.prefix.Contains(a) {
		return fmt.Errorf("address %s is outside subnet %s", a, s.prefix)
	}
	if a == s.at(0) || a == s.Gateway() || a == s.at(s.size-1) {
		return fmt.Errorf("address %s of subnet %s is reserved (network, gateway or broadcast)", a, s.prefix)
	}
	if cur, ok := s.owners[a]; ok && cur != owner {
		return fmt.Errorf("address %s is held by %s, not %s", a, cur, owner)
	}
	s.owners[a] = owner
	return nil
}

// Release frees a if owner holds it; anything else is a no-op, so a late
// release can never free an address someone else was given since.
func (s *Subnet) Release(a netip.Addr, owner string) {
	if s.owners[a] == owner {
		delete(s.owners, a)
	}
}

func (s *Subnet) at(off uint64) netip.Addr {
	return fromUint(toUint(s.prefix.Addr()) + off)
}
