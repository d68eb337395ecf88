// Package hostaddr finds an address of this host that other hosts may
// reach: what a manager advertises when it listens on every address, and
// the overlay's underlay when an agent reaches its managers on loopback.
package hostaddr

import (
	"errors"
	"net"
	"net/netip"
)

// ErrNone says the host has no IPv4 address but loopback.
var ErrNone = errors.New("the host has no IPv4 address but loopback")

// Global4 is the first global unicast IPv4 address of an interface that is
// up and not loopback.
func Global4() (netip.Addr, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
				return netip.AddrFrom4([4]byte(n.IP.To4())), nil
			}
		}
	}
	return netip.Addr{}, ErrNone
}
