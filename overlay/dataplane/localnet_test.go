package dataplane

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"berth/internal/testhost"
)

// TestPublishOnLoopback: a published port answers on the node's
// 127.0.0.1, TCP and UDP, when a task runs there (the task sees the
// network's gateway, masqueraded) and when it runs on another node only
// (through the loopback hop, under strict rp_filter; the task sees the
// forwarding node). No
// underlay gets route_localnet. A sweep removes the hop, and so does
// publishing nothing; removing the network takes the bridge, with its
// route_localnet, and the table.
func TestPublishOnLoopback(t *testing.T) {
	cl := testhost.NewT(t, 2)
	n1, n2 := newNode(t, cl.Hosts[0]), newNode(t, cl.Hosts[1])
	// Strict reverse-path filtering, as some distributions set it, on
	// every device h2 has or makes: the hop must pass it.
	for _, dev := range []string{"all", "default"} {
		mustDo(t, inNS(t, n2.host.NetnsPath(), func() error {
			return os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/rp_filter", []byte("1"), 0o644)
		}))
	}
	mustDo(t, n1.plane.SetNetwork(netA))
	task := newContainer(t)
	e := ep("t1", netA, "10.77.0.21")
	mustDo(t, n1.plane.Attach(task.ns(), e))
	serveRemote(t, task, ":80")
	echoUDP(t, task, ":82")
	ports := []PublishedPort{{Protocol: unix.IPPROTO_TCP, Port: 8080, Target: 80}, {Protocol: unix.IPPROTO_UDP, Port: 8082, Target: 82}}
	mustDo(t, n1.plane.SetPublished([]Published{{ServiceID: "web", Ports: ports, Local: []netip.Addr{e.Addr.Addr()}}}))
	mustDo(t, n2.plane.SetPublished([]Published{{ServiceID: "web", Ports: ports, Remote: []netip.Addr{n1.host.Addr}}}))

	if got, err := fetchIn(t, n1.host, "127.0.0.1:8080"); err != nil || got != netA.Gateway.String() {
		t.Errorf("h1 → 127.0.0.1:8080 (task on h1): the task saw %q, %v; want the gateway %s", got, err, netA.Gateway)
	}
	if got, err := askUDP(t, n1.host, "127.0.0.1:8082"); err != nil || got != netA.Gateway.String() {
		t.Errorf("h1 → 127.0.0.1:8082/udp (task on h1): the task saw %q, %v; want the gateway %s", got, err, netA.Gateway)
	}
	for i := range 20 { // every connection, not only the first, takes the hop both ways
		if got, err := fetchIn(t, n2.host, "127.0.0.1:8080"); err != nil || got != n2.host.Addr.String() {
			t.Fatalf("h2 → 127.0.0.1:8080 (task on h1 only), connection %d: the task saw %q, %v; want h2 %s, which forwarded it", i, got, err, n2.host.Addr)
		}
	}
	if got, err := askUDP(t, n2.host, "127.0.0.1:8082"); err != nil || got != n2.host.Addr.String() {
		t.Errorf("h2 → 127.0.0.1:8082/udp (task on h1 only): the task saw %q, %v; want h2 %s", got, err, n2.host.Addr)
	}
	// The node's other addresses still answer from it.
	if got, err := fetchIn(t, n2.host, netip.AddrPortFrom(n2.host.Addr, 8080).String()); err != nil || got != n2.host.Addr.String() {
		t.Errorf("h2 → its own address:8080: the task saw %q, %v; want h2 %s", got, err, n2.host.Addr)
	}

	// A restarted agent's sweep removes the hop; publishing makes it again.
	again, err := New(Config{NetNSPath: n2.host.NetnsPath(), Underlay: n2.host.Addr})
	mustDo(t, err)
	defer again.Close()
	mustDo(t, again.Sweep(nil, nil))
	if left := ours(t, n2); len(left) != 0 {
		t.Errorf("h2 after a sweep: links %v left; want none", left)
	}
	n2.plane = again
	mustDo(t, n2.plane.SetPublished([]Published{{ServiceID: "web", Ports: ports, Remote: []netip.Addr{n1.host.Addr}}}))
	if got, err := fetchIn(t, n2.host, "127.0.0.1:8080"); err != nil || got != n2.host.Addr.String() {
		t.Errorf("h2 → 127.0.0.1:8080 after a restart: the task saw %q, %v; want h2 %s", got, err, n2.host.Addr)
	}

	bridge := n1.plane.bridgeName(netA.VNI)
	if v := sysctlIn(t, n1.host, "/proc/sys/net/ipv4/conf/"+bridge+"/route_localnet"); v != "1" {
		t.Errorf("route_localnet on %s is %q, want 1", bridge, v)
	}
	for _, n := range []*node{n1, n2} {
		for _, dev := range []string{"all", "default", "eth0"} {
			if v := sysctlIn(t, n.host, "/proc/sys/net/ipv4/conf/"+dev+"/route_localnet"); v != "0" {
				t.Errorf("%s: route_localnet on %s is %q, want 0: only berth's own devices get it", n.host.Name, dev, v)
			}
		}
	}
	mustDo(t, n1.plane.SetPublished(nil))
	mustDo(t, n2.plane.SetPublished(nil))
	mustDo(t, n1.plane.Detach(e))
	mustDo(t, n1.plane.RemoveNetwork(netA.ID))
	if v := sysctlIn(t, n1.host, "/proc/sys/net/ipv4/conf/"+bridge+"/route_localnet"); v != "" {
		t.Errorf("%s's route_localnet is still there (%q) after the network went", bridge, v)
	}
	for _, n := range []*node{n1, n2} {
		if tables := nftTables(t, n); len(tables) != 0 {
			t.Errorf("%s: tables left: %v", n.host.Name, tables)
		}
		if left := ours(t, n); len(left) != 0 {
			t.Errorf("%s: links left: %v", n.host.Name, left)
		}
	}
}

// TestLoopbackClosedToContainers: route_localnet on a bridge (on while
// the node publishes a port) must not let a container reach what the node
// binds to 127.0.0.1 only (CVE-2020-8558). The container routes
// 127.0.0.0/8 to its gateway (its local routes for it deleted, as a
// container with CAP_NET_ADMIN in its namespace may) and sends datagrams
// to a UDP listener on the node's 127.0.0.1: the localnet chain drops
// them. Without that chain the listener gets them (a TCP listener there
// gets the SYN too, and answers).
func TestLoopbackClosedToContainers(t *testing.T) {
	cl := testhost.NewT(t, 1)
	n1 := newNode(t, cl.Hosts[0])
	mustDo(t, n1.plane.SetNetwork(netA))
	evil := newContainer(t)
	e := ep("t1", netA, "10.77.0.22")
	mustDo(t, n1.plane.Attach(evil.ns(), e))
	port := []PublishedPort{{Protocol: unix.IPPROTO_TCP, Port: 8080, Target: 80}}
	mustDo(t, n1.plane.SetPublished([]Published{{ServiceID: "web", Ports: port, Local: []netip.Addr{e.Addr.Addr()}}}))
	bridge := n1.plane.bridgeName(netA.VNI)
	if v := sysctlIn(t, n1.host, "/proc/sys/net/ipv4/conf/"+bridge+"/route_localnet"); v != "1" {
		t.Fatalf("route_localnet on %s is %q with a port published, want 1: the test would prove nothing", bridge, v)
	}
	var pc net.PacketConn
	mustDo(t, inNS(t, n1.host.NetnsPath(), func() (err error) { pc, err = net.ListenPacket("udp", "127.0.0.1:0"); return err }))
	defer pc.Close()
	got := make(chan string, 100)
	go func() {
		buf := make([]byte, 100)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- fmt.Sprintf("%q from %s", buf[:n], from)
		}
	}()
	h := evil.handle(t)
	lo, err := h.LinkByName("lo")
	mustDo(t, err)
	for _, dst := range []string{"127.0.0.0/8", "127.0.0.1/32"} { // 127.0.0.1 goes through the default route
		r := &netlink.Route{LinkIndex: lo.Attrs().Index, Table: unix.RT_TABLE_LOCAL, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST, Dst: ipNet(netip.MustParsePrefix(dst))}
		mustDo(t, h.RouteDel(r))
	}
	mustDo(t, inNS(t, evil.ns(), func() error {
		conn, err := net.Dial("udp", pc.LocalAddr().String())
		if err != nil {
			return err
		}
		defer conn.Close()
		for range 10 {
			if _, err := conn.Write([]byte("from the container")); err != nil {
				return err
			}
		}
		return nil
	}))
	select {
	case m := <-got:
		t.Errorf("the node's 127.0.0.1-only listener got %s, sent by a container through its gateway", m)
	case <-time.After(2 * time.Second):
	}
}

// sysctlIn reads a /proc/sys file in h's namespace; "" when there is none.
func sysctlIn(t *testing.T, h *testhost.Host, path string) string {
	t.Helper()
	var b []byte
	inNS(t, h.NetnsPath(), func() (err error) { b, err = os.ReadFile(path); return err })
	if len(b) > 0 && b[len(b)-1] == '\n' {
		b = b[:len(b)-1]
	}
	return string(b)
}

// TestHopCarriesNothingElse: a packet another host sends to the loopback
// hop's addresses through a node is dropped there, not passed back and
// forth through the pair until its TTL runs out.
func TestHopCarriesNothingElse(t *testing.T) {
	cl := testhost.NewT(t, 2)
	n1, n2 := newNode(t, cl.Hosts[0]), newNode(t, cl.Hosts[1])
	ports := []PublishedPort{{Protocol: unix.IPPROTO_TCP, Port: 8080, Target: 80}}
	mustDo(t, n2.plane.SetPublished([]Published{{ServiceID: "web", Ports: ports, Remote: []netip.Addr{n1.host.Addr}}}))
	syns := countSYNs(t, n2, 8080)
	for _, a := range []netip.Addr{hopDst, hopSNAT} {
		mustDo(t, n1.h.RouteAdd(&netlink.Route{Dst: ipNet(netip.PrefixFrom(a, 32)), Gw: n2.host.Addr.AsSlice()}))
		// Dial until a SYN reached h2 (on a loaded box the first try can
		// end before one left h1), then count what that try caused: each
		// SYN enters h2 once, a retransmission may follow the first;
		// through an open hop they circle tens of times.
		for try := 0; ; try++ {
			before := syns()
			inNS(t, n1.host.NetnsPath(), func() error {
				_, err := net.DialTimeout("tcp", netip.AddrPortFrom(a, 8080).String(), 500*time.Millisecond)
				return err
			})
			n := syns() - before
			if n == 0 && try < 20 {
				continue
			}
			if n < 1 || n > 2 {
				t.Errorf("a dial to %s made h2 see %d SYNs; want the SYN once (1-2)", a, n)
			}
			break
		}
	}
}

// TestLocalnetOnlyWhilePublishing: the localnet guard (prerouting) and
// the mesh's DSCP marking (postrouting), base chains that cost every
// packet through their hooks, exist only while the node publishes a port,
// and so does route_localnet on its bridges, which the guard is for. A
// restarted agent's sweep clears the route_localnet the earlier agent
// left on a bridge it keeps, and its table has no guard.
func TestLocalnetOnlyWhilePublishing(t *testing.T) {
	cl := testhost.NewT(t, 1)
	n := newNode(t, cl.Hosts[0])
	mustDo(t, n.plane.SetNetwork(netA))
	assertPublishing(t, n, "a network and no port published", false)

	task := newContainer(t)
	e := ep("t1", netA, "10.77.0.21")
	mustDo(t, n.plane.Attach(task.ns(), e))
	serveRemote(t, task, ":80")
	pubs := []Published{{ServiceID: "web", Ports: []PublishedPort{{Protocol: unix.IPPROTO_TCP, Port: 8080, Target: 80}},
		Local: []netip.Addr{e.Addr.Addr()}}}
	mustDo(t, n.plane.SetPublished(pubs))
	assertPublishing(t, n, "a port published", true)
	if got, err := fetchIn(t, n.host, "127.0.0.1:8080"); err != nil || got != netA.Gateway.String() {
		t.Errorf("127.0.0.1:8080 with the port published: the task saw %q, %v; want the gateway %s", got, err, netA.Gateway)
	}
	mustDo(t, n.plane.SetPublished(nil))
	assertPublishing(t, n, "the port unpublished", false)
	if _, err := fetchIn(t, n.host, "127.0.0.1:8080"); err == nil {
		t.Error("127.0.0.1:8080 still answers with the port unpublished")
	}

	mustDo(t, n.plane.SetPublished(pubs)) // what the restarted agent finds
	again, err := New(Config{NetNSPath: n.host.NetnsPath(), Underlay: n.host.Addr})
	mustDo(t, err)
	defer again.Close()
	mustDo(t, again.Sweep([]Network{netA}, []Endpoint{e}))
	n.plane = again
	assertPublishing(t, n, "a restarted agent's sweep", false)
	mustDo(t, n.plane.SetNetwork(netA))
	mustDo(t, n.plane.SetPublished(pubs))
	assertPublishing(t, n, "the restarted agent publishing", true)
	if got, err := fetchIn(t, n.host, "127.0.0.1:8080"); err != nil || got != netA.Gateway.String() {
		t.Errorf("127.0.0.1:8080 after a restart: the task saw %q, %v; want the gateway %s", got, err, netA.Gateway)
	}
}

// assertPublishing checks, on n with netA built, that the prerouting
// localnet and postrouting mesh-dscp chains exist and netA's bridge has
// route_localnet exactly when publishing.
func assertPublishing(t *testing.T, n *node, when string, publishing bool) {
	t.Helper()
	chains := nftChains(t, n)
	for _, want := range []struct {
		name string
		hook *nftables.ChainHook
	}{{"localnet", nftables.ChainHookPrerouting}, {meshDSCPChain, nftables.ChainHookPostrouting}} {
		has := slices.ContainsFunc(chains, func(ch *nftables.Chain) bool {
			return ch.Name == want.name && ch.Hooknum != nil && *ch.Hooknum == *want.hook
		})
		if has != publishing {
			t.Errorf("%s: the table has the base chain %s: %v, want %v", when, want.name, has, publishing)
		}
	}
	bridge := n.plane.bridgeName(netA.VNI)
	want := map[bool]string{false: "0", true: "1"}[publishing]
	if v := sysctlIn(t, n.host, "/proc/sys/net/ipv4/conf/"+bridge+"/route_localnet"); v != want {
		t.Errorf("%s: route_localnet on %s is %q, want %s", when, bridge, v, want)
	}
}
