package agent

import (
	"fmt"
	"net"
	"net/netip"

	"berth/internal/hostaddr"
)

// hostAddr is the host's own address, the underlay when the way to the
// managers is loopback (the agent of berth-manager --dev, or one joined
// through 127.0.0.1 beside its manager): VXLAN needs an address other
// nodes could reach, and the MTU of a real link. It is the source of the
// default route (a UDP connect sends nothing), else the first global
// unicast IPv4 address of an interface that is up, as the manager picks
// its advertise address.
func hostAddr() (netip.Addr, error) {
	if c, err := net.Dial("udp4", "192.0.2.1:9"); err == nil { // TEST-NET-1: only a route is looked up
		a, ok := netip.AddrFromSlice(c.LocalAddr().(*net.UDPAddr).IP.To4())
		c.Close()
		if ok && !a.IsLoopback() {
			return a, nil
		}
	}
	a, err := hostaddr.Global4()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w; overlay networks need one (give --advertise-addr, or turn overlay networking off)", err)
	}
	return a, nil
}
