package allocator

import "net/netip"

// holding is one address an owner holds on one network.
type holding struct {
	net  string
	addr netip.Prefix
}

// holdings are what one owner holds, at most one address per network. A
// slice, not a map: a task holds one or two addresses, and a map of one
// entry costs some 400 bytes, 40 MB at 100k tasks.
type holdings []holding

func (h holdings) get(netID string) (netip.Prefix, bool) {
	for _, x := range h {
		if x.net == netID {
			return x.addr, true
		}
	}
	return netip.Prefix{}, false
}

func (h holdings) set(netID string, p netip.Prefix) holdings {
	for i := range h {
		if h[i].net == netID {
			h[i].addr = p
			return h
		}
	}
	return append(h, holding{net: netID, addr: p})
}

func (h holdings) without(netID string) holdings {
	for i := range h {
		if h[i].net == netID {
			return append(h[:i:i], h[i+1:]...)
		}
	}
	return h
}
