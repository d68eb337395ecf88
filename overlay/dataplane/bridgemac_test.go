package dataplane

import (
	"net"
	"testing"

	"berth/internal/testhost"
)

// TestBridgeKeepsItsAddress: the bridge's MAC, every container's gateway
// in its neighbour table, stays as containers come and go. A bridge left
// to the kernel takes the lowest address of its ports: containers then
// sent their DNS queries and outside traffic to an address no longer the
// gateway's, until their neighbour entry expired (up to half a minute).
func TestBridgeKeepsItsAddress(t *testing.T) {
	cl := testhost.NewT(t, 1)
	n := newNode(t, cl.Hosts[0])
	mustDo(t, n.plane.SetNetwork(netA))
	mac := func() string {
		br, err := n.h.LinkByName(n.plane.bridgeName(netA.VNI))
		if err != nil {
			t.Fatal(err)
		}
		return br.Attrs().HardwareAddr.String()
	}
	before := mac()
	e := ep("t1", netA, "10.77.0.5")
	mustDo(t, n.plane.Attach(newContainer(t).ns(), e))
	// The node end of the container's veth gets the lowest address there
	// is: a bridge that follows its ports would take it.
	host, err := n.h.LinkByName(n.plane.hostName(e))
	if err != nil {
		t.Fatal(err)
	}
	mustDo(t, n.h.LinkSetHardwareAddr(host, net.HardwareAddr{0x02, 0, 0, 0, 0, 1}))
	if got := mac(); got != before {
		t.Fatalf("bridge address %s once a port with a lower one joined, was %s", got, before)
	}
	mustDo(t, n.plane.Detach(e))
	if got := mac(); got != before {
		t.Fatalf("bridge address %s once its last container left, was %s", got, before)
	}
}
