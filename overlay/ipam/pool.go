package ipam

import (
	"errors"
	"fmt"
	"net/netip"
)

// DefaultPool is the cluster address pool when none is configured, as
// Docker Swarm's default-addr-pool.
const DefaultPool = "10.0.0.0/8"

// DefaultMaskLen is the prefix length of subnets carved from the pool.
const DefaultMaskLen = 24

// MaxMaskLen is the longest prefix a network may have: a /29 leaves five
// addresses for tasks and VIPs after the network, gateway and broadcast.
const MaxMaskLen = 29

// ErrExhausted says a pool or subnet has nothing left to give.
var ErrExhausted = errors.New("exhausted")

// OverlapError says a subnet overlaps one already in use.
type OverlapError struct {
	Subnet, Other netip.Prefix
	// Owner names what holds Other (a network's name).
	Owner string
}

func (e *OverlapError) Error() string {
	return fmt.Sprintf("subnet %s overlaps %s of network %q", e.Subnet, e.Other, e.Owner)
}

// Used is a subnet in use and the name of what holds it.
type Used struct {
	Prefix netip.Prefix
	Owner  string
}

// CheckPool checks a pool and the prefix length of the subnets to carve
// from it, naming the flags a user sets them with.
func CheckPool(pool netip.Prefix, maskLen int) error {
	if !pool.IsValid() || !pool.Addr().Is4() {
		return fmt.Errorf("address pool %s is not an IPv4 CIDR; use one such as %s", pool, DefaultPool)
	}
	if pool.Masked() != pool {
		return fmt.Errorf("address pool %s has host bits set; use %s", pool, pool.Masked())
	}
	if maskLen < pool.Bits() || maskLen > MaxMaskLen {
		return fmt.Errorf("subnet size /%d does not fit pool %s; use a mask length from %d to %d", maskLen, pool, pool.Bits(), MaxMaskLen)
	}
	return nil
}

// CheckFree returns an *OverlapError when p overlaps a used subnet.
func CheckFree(p netip.Prefix, used []Used) error {
	for _, u := range used {
		if u.Prefix.Overlaps(p) {
			return &OverlapError{Subnet: p, Other: u.Prefix, Owner: u.Owner}
		}
	}
	return nil
}

// NextSubnet returns the first /maskLen of pool that overlaps no used
// subnet, or an error wrapping ErrExhausted naming the pool.
func NextSubnet(pool netip.Prefix, maskLen int, used []Used) (netip.Prefix, error) {
	if err := CheckPool(pool, maskLen); err != nil {
		return netip.Prefix{}, err
	}
	size := uint64(1) << (32 - maskLen)
	end := toUint(pool.Addr()) + uint64(1)<<(32-pool.Bits())
	for at := toUint(pool.Addr()); at < end; {
		cand := netip.PrefixFrom(fromUint(at), maskLen)
		err := CheckFree(cand, used)
		if err == nil {
			return cand, nil
		}
		// Jump past whichever is larger: the candidate or what it hit.
		var oe *OverlapError
		errors.As(err, &oe)
		next := at + size
		if other := toUint(oe.Other.Masked().Addr()) + uint64(1)<<(32-oe.Other.Bits()); other > next {
			next = (other + size - 1) / size * size
		}
		at = next
	}
	return netip.Prefix{}, fmt.Errorf("address pool %s has no free /%d left: %w; remove unused networks or create the cluster with a larger --default-addr-pool", pool, maskLen, ErrExhausted)
}

func toUint(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

func fromUint(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
