package dataplane

import (
	"net/netip"
	"testing"

	"berth/internal/testhost"
)

// BenchmarkSetPeer is the time to install one remote task's FDB and
// neighbour entries (two netlink calls), the per-peer cost a node pays
// when a task starts elsewhere.
func BenchmarkSetPeer(b *testing.B) {
	cl := testhost.NewT(b, 1)
	n := newBenchNode(b, cl.Hosts[0])
	if err := n.SetNetwork(Network{ID: "a", VNI: 4099, Subnet: netip.MustParsePrefix("10.0.0.0/8"), Gateway: netip.MustParseAddr("10.0.0.1")}); err != nil {
		b.Fatal(err)
	}
	node := netip.MustParseAddr("198.18.0.99")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		addr := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if err := n.SetPeer(Peer{NetworkID: "a", Addr: addr, Node: node}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/peer")
}
