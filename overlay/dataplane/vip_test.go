package dataplane

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"berth/internal/testhost"
)

// TestVIP balances a service's VIP from a client container over two
// tasks on two hosts: every replica answers, a task removed from the
// ready set gets no new connection, a VIP with none refuses at once, a
// task reaching its own VIP may draw itself, and many short connections
// alternating between the VIP and a task's own address (the server
// closing first, so its side holds TIME_WAIT) never stall on a dropped
// SYN: the client retransmits none.
func TestVIP(t *testing.T) {
	cl := testhost.NewT(t, 2)
	n1, n2 := newNode(t, cl.Hosts[0]), newNode(t, cl.Hosts[1])
	mustDo(t, n1.plane.SetNetwork(netA))
	mustDo(t, n2.plane.SetNetwork(netA))
	client, b1, b2 := newContainer(t), newContainer(t), newContainer(t)
	ec, e1, e2 := ep("c", netA, "10.77.0.10"), ep("b1", netA, "10.77.0.11"), ep("b2", netA, "10.77.0.12")
	mustDo(t, n1.plane.Attach(client.ns(), ec))
	mustDo(t, n1.plane.Attach(b1.ns(), e1))
	mustDo(t, n2.plane.Attach(b2.ns(), e2))
	mustDo(t, n1.plane.SetPeer(Peer{NetworkID: netA.ID, Addr: e2.Addr.Addr(), Node: n2.host.Addr}))
	for _, e := range []Endpoint{ec, e1} {
		mustDo(t, n2.plane.SetPeer(Peer{NetworkID: netA.ID, Addr: e.Addr.Addr(), Node: n1.host.Addr}))
	}
	serve(t, b1, ":80", "b1")
	serve(t, b2, ":80", "b2")
	vip := netip.MustParseAddr("10.77.0.200")
	both := []netip.Addr{e1.Addr.Addr(), e2.Addr.Addr()}
	mustDo(t, n1.plane.SetVIPs(client.ns(), []VIP{{ServiceID: "web", Addr: vip, Backends: both}}))

	seen := answers(t, client, vip, 40)
	if seen["b1"] == 0 || seen["b2"] == 0 {
		t.Fatalf("40 connections to the VIP reached %v; want both replicas", seen)
	}

	// b2 is no longer ready: no new connection goes to it.
	mustDo(t, n1.plane.SetVIPs(client.ns(), []VIP{{ServiceID: "web", Addr: vip, Backends: both[:1]}}))
	if seen := answers(t, client, vip, 20); seen["b2"] != 0 || seen["b1"] != 20 {
		t.Errorf("after b2 left the VIP, 20 connections reached %v; want b1 only", seen)
	}

	// No ready task: refused at once, not left to time out.
	mustDo(t, n1.plane.SetVIPs(client.ns(), []VIP{{ServiceID: "web", Addr: vip}}))
	if _, err := fetch(t, client, netip.AddrPortFrom(vip, 80).String(), 5*time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("VIP without ready tasks: %v; want connection refused", err)
	}

	// A task reaching its own service may draw itself.
	mustDo(t, n1.plane.SetVIPs(b1.ns(), []VIP{{ServiceID: "web", Addr: vip, Backends: both[:1]}}))
	if got, err := fetch(t, b1, netip.AddrPortFrom(vip, 80).String(), 2*time.Second); err != nil || got != "b1" {
		t.Errorf("b1 → its own VIP: %q, %v", got, err)
	}

	// Short connections to one task port, alternating between the VIP and
	// the task's own address from the same client port: each would reuse
	// the 4-tuple the task still holds in TIME_WAIT (it closes first)
	// with another timestamp clock, and the tuple the client's conntrack
	// still holds. A dropped SYN shows as a retransmission.
	mustDo(t, n1.plane.SetVIPs(client.ns(), []VIP{{ServiceID: "web", Addr: vip, Backends: both[1:]}}))
	before := synRetrans(t, client)
	for i := range 300 {
		port := 20000 + i/3
		addr := netip.AddrPortFrom(vip, 80)
		if i%3 == 1 {
			addr = netip.AddrPortFrom(e2.Addr.Addr(), 80)
		}
		if got, err := fetchFrom(t, client, port, addr.String()); err != nil || got != "b2" {
			t.Fatalf("connection %d from port %d to %s: %q, %v", i, port, addr, got, err)
		}
	}
	if n := synRetrans(t, client) - before; n != 0 {
		t.Errorf("%d SYNs retransmitted over 300 short connections: connections stalled a second", n)
	}

	// Nothing of ours stays in the container once it reaches no VIP.
	mustDo(t, n1.plane.SetVIPs(client.ns(), nil))
	if tables := nsTables(t, client.ns()); len(tables) != 0 {
		t.Errorf("tables left in the container: %v", tables)
	}
}

// answers connects n times from c to vip:80 and counts the replies.
func answers(t *testing.T, c container, vip netip.Addr, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		got, err := fetch(t, c, netip.AddrPortFrom(vip, 80).String(), 2*time.Second)
		if err != nil {
			t.Fatalf("connection to the VIP: %v", err)
		}
		seen[got]++
	}
	return seen
}

// synRetrans is the count of SYNs c's TCP stack has retransmitted.
func synRetrans(t testing.TB, c container) int {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/net/netstat", c.pid))
	mustDo(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		names := strings.Fields(sc.Text())
		if !sc.Scan() {
			break
		}
		vals := strings.Fields(sc.Text())
		for i, name := range names {
			if name == "TCPSynRetrans" && i < len(vals) {
				n, err := strconv.Atoi(vals[i])
				mustDo(t, err)
				return n
			}
		}
	}
	t.Fatal("no TCPSynRetrans counter in /proc/net/netstat")
	return 0
}

// nsTables lists the nftables tables of ours in the namespace at path.
func nsTables(t *testing.T, path string) []string {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	mustDo(t, err)
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	mustDo(t, err)
	tables, err := c.ListTables()
	mustDo(t, err)
	var out []string
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, DefaultPrefix) {
			out = append(out, tb.Name)
		}
	}
	return out
}

// fetchFrom connects from port of c to addr and returns what it says.
func fetchFrom(t testing.TB, c container, port int, addr string) (string, error) {
	t.Helper()
	var got []byte
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{Port: port},
		Control: func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
			return errors.Join(err, serr)
		}}
	err := inNS(t, c.ns(), func() error {
		conn, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		got, err = io.ReadAll(conn)
		return err
	})
	return string(got), err
}

// TestContainerTracksOnlyVIPFlows: the VIP table switches connection
// tracking on in the client container, but only flows with a VIP or a
// backend at the other end are tracked there: a connection to the VIP
// (its reply translated back) and one from a backend; a connection from
// anywhere else (here the node, as a published port's client would come)
// leaves no entry in the container's table. A VIP without backends is
// still refused.
func TestContainerTracksOnlyVIPFlows(t *testing.T) {
	cl := testhost.NewT(t, 1)
	n := newNode(t, cl.Hosts[0])
	mustDo(t, n.plane.SetNetwork(netA))
	x, b1 := newContainer(t), newContainer(t)
	ex, e1 := ep("x", netA, "10.77.0.20"), ep("b1", netA, "10.77.0.21")
	mustDo(t, n.plane.Attach(x.ns(), ex))
	mustDo(t, n.plane.Attach(b1.ns(), e1))
	serve(t, b1, ":80", "b1")
	serve(t, x, ":7000", "x")
	vip, empty := netip.MustParseAddr("10.77.0.200"), netip.MustParseAddr("10.77.0.201")
	mustDo(t, n.plane.SetVIPs(x.ns(), []VIP{
		{ServiceID: "web", Addr: vip, Backends: []netip.Addr{e1.Addr.Addr()}},
		{ServiceID: "none", Addr: empty},
	}))

	if got, err := fetch(t, x, netip.AddrPortFrom(vip, 80).String(), 2*time.Second); err != nil || got != "b1" {
		t.Fatalf("x → the VIP: %q, %v", got, err)
	}
	if _, err := fetch(t, x, netip.AddrPortFrom(empty, 80).String(), 5*time.Second); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("x → a VIP without backends: %v; want connection refused", err)
	}
	if got, err := fetch(t, b1, "10.77.0.20:7000", 2*time.Second); err != nil || got != "x" {
		t.Fatalf("b1 → x: %q, %v", got, err)
	}
	var got []byte
	mustDo(t, inNS(t, n.host.NetnsPath(), func() error {
		conn, err := net.DialTimeout("tcp", "10.77.0.20:7000", 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		got, err = io.ReadAll(conn)
		return err
	}))
	if string(got) != "x" {
		t.Fatalf("the node → x: %q", got)
	}

	table := strings.Join(conntrack(t, x.ns()), "\n")
	for _, want := range []string{"src=10.77.0.20 dst=10.77.0.200", "src=10.77.0.21 dst=10.77.0.20"} {
		if !strings.Contains(table, want) {
			t.Errorf("x's conntrack has no entry %q (a VIP flow); its table:\n%s", want, table)
		}
	}
	if from := "src=" + netA.Gateway.String() + " dst=10.77.0.20"; strings.Contains(table, from) {
		t.Errorf("x tracks the node's connection to it (%s), which no VIP rewrites; its table:\n%s", from, table)
	}
}

// TestVIPTableOfAnEarlierAgentIsReplaced: a container whose table an
// earlier agent wrote, with a chain this one does not make (the filter
// chain that used to refuse VIPs without backends: a hook every packet
// would still go through), gets its table made anew on the first write:
// only this agent's chains remain, and the VIP answers.
func TestVIPTableOfAnEarlierAgentIsReplaced(t *testing.T) {
	cl := testhost.NewT(t, 1)
	n := newNode(t, cl.Hosts[0])
	mustDo(t, n.plane.SetNetwork(netA))
	x, b1 := newContainer(t), newContainer(t)
	mustDo(t, n.plane.Attach(x.ns(), ep("x", netA, "10.77.0.30")))
	mustDo(t, n.plane.Attach(b1.ns(), ep("b1", netA, "10.77.0.31")))
	serve(t, b1, ":80", "b1")
	old := fmt.Sprintf(`table ip %s {
	chain vip-refuse {
		type filter hook output priority filter; policy accept;
		ip daddr 10.77.0.200 reject
	}
}
`, DefaultPrefix)
	cmd := exec.Command("nsenter", "--net="+x.ns(), "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(old)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("write the earlier agent's table: %v\n%s", err, out)
	}
	vip := netip.MustParseAddr("10.77.0.200")
	mustDo(t, n.plane.SetVIPs(x.ns(), []VIP{{ServiceID: "web", Addr: vip, Backends: []netip.Addr{netip.MustParseAddr("10.77.0.31")}}}))
	if got, err := fetch(t, x, netip.AddrPortFrom(vip, 80).String(), 2*time.Second); err != nil || got != "b1" {
		t.Errorf("x → the VIP after the rewrite: %q, %v; want b1", got, err)
	}
	ns, err := netns.GetFromPath(x.ns())
	mustDo(t, err)
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	mustDo(t, err)
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	mustDo(t, err)
	var names []string
	for _, ch := range chains {
		names = append(names, ch.Name)
	}
	if slices.Sort(names); !slices.Equal(names, vipChains) {
		t.Errorf("chains in x after the rewrite: %v; want %v", names, vipChains)
	}
}

// TestVIPConnectionOutlivesItsBackend: a connection through a VIP gets its
// answer even when its backend left the VIP's map meanwhile (a rolling
// update withdraws a task, which then drains what it has): the reply is
// still tracked in the client, so it is translated back from the backend
// to the VIP. Tracking only the current backends' flows lost it, and the
// client waited for ever.
func TestVIPConnectionOutlivesItsBackend(t *testing.T) {
	cl := testhost.NewT(t, 1)
	n := newNode(t, cl.Hosts[0])
	mustDo(t, n.plane.SetNetwork(netA))
	x, b1 := newContainer(t), newContainer(t)
	e1 := ep("b1", netA, "10.77.0.41")
	mustDo(t, n.plane.Attach(x.ns(), ep("x", netA, "10.77.0.40")))
	mustDo(t, n.plane.Attach(b1.ns(), e1))
	var ln net.Listener
	mustDo(t, inNS(t, b1.ns(), func() (err error) { ln, err = net.Listen("tcp", ":80"); return err }))
	t.Cleanup(func() { ln.Close() })
	accepted, release := make(chan net.Conn, 1), make(chan struct{})
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- conn
		<-release
		io.WriteString(conn, "b1")
		conn.Close()
	}()
	vip := netip.MustParseAddr("10.77.0.210")
	mustDo(t, n.plane.SetVIPs(x.ns(), []VIP{{ServiceID: "web", Addr: vip, Backends: []netip.Addr{e1.Addr.Addr()}}}))

	var conn net.Conn
	mustDo(t, inNS(t, x.ns(), func() (err error) {
		conn, err = net.DialTimeout("tcp", netip.AddrPortFrom(vip, 80).String(), 2*time.Second)
		return err
	}))
	defer conn.Close()
	select {
	case c, ok := <-accepted:
		if !ok {
			t.Fatal("b1 accepted nothing")
		}
		defer c.Close()
	case <-time.After(5 * time.Second):
		t.Fatal("b1 accepted no connection through the VIP")
	}
	// b1 leaves the map (no backend left), then answers.
	mustDo(t, n.plane.SetVIPs(x.ns(), []VIP{{ServiceID: "web", Addr: vip}}))
	close(release)
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "b1" {
		t.Errorf("the answer of a backend withdrawn from the VIP meanwhile: %q, %v; want \"b1\"", got, err)
	}
}
