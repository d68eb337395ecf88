package runtime

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"berth/internal/await"
)

// TestNetIOCountsTheContainersInterfaces: frames sent to an interface
// inside a container's network namespace show in its NetIO, read from
// that namespace; the host's interfaces do not. No address is given on
// the host: the frames are raw Ethernet on a veth pair the test makes.
func TestNetIOCountsTheContainersInterfaces(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("net", "sleep", "1000"))
	host, peer := fmt.Sprintf("bsh%d", os.Getpid()%1e7), fmt.Sprintf("bsc%d", os.Getpid()%1e7)
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: host}, PeerName: peer}))
	hl, err := netlink.LinkByName(host)
	must(t, err)
	t.Cleanup(func() { _ = netlink.LinkDel(hl) })
	pl, err := netlink.LinkByName(peer)
	must(t, err)
	must(t, netlink.LinkSetNsPid(pl, c.Pid()))
	ns, err := netns.GetFromPid(c.Pid())
	must(t, err)
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	must(t, err)
	defer h.Close()
	inside, err := h.LinkByName(peer)
	must(t, err)
	must(t, h.LinkSetUp(inside))
	must(t, netlink.LinkSetUp(hl))

	rx0, _, err := c.NetIO()
	must(t, err)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	must(t, err)
	defer unix.Close(fd)
	frame := make([]byte, 200)
	copy(frame, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) // broadcast
	copy(frame[6:], hl.Attrs().HardwareAddr)
	frame[12], frame[13] = 0x88, 0xb5 // the local experimental EtherType
	to := &unix.SockaddrLinklayer{Ifindex: hl.Attrs().Index, Halen: 6}
	copy(to.Addr[:], frame[:6])
	const frames = 10
	for range frames {
		must(t, unix.Sendto(fd, frame, 0, to))
	}
	await.True(t, 10*time.Second, func() bool {
		rx, _, err := c.NetIO()
		return err == nil && rx-rx0 >= frames*200
	}, "the container's interfaces never counted the %d frames of 200 bytes sent to them", frames)
}
