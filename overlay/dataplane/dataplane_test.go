package dataplane

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"berth/internal/testhost"
)

// node is a test host with a Plane built in its namespace.
type node struct {
	host  *testhost.Host
	h     *netlink.Handle
	plane *Plane
}

func newNode(t testing.TB, h *testhost.Host) *node {
	t.Helper()
	n := &node{host: h}
	n.plane, n.h = planeIn(t, h)
	return n
}

// newBenchNode is a Plane in h's namespace for a benchmark.
func newBenchNode(b *testing.B, h *testhost.Host) *Plane {
	p, _ := planeIn(b, h)
	return p
}

func planeIn(t testing.TB, h *testhost.Host) (*Plane, *netlink.Handle) {
	t.Helper()
	ns, err := netns.GetFromPath(h.NetnsPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	nh, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nh.Close)
	p, err := New(Config{NetNSPath: h.NetnsPath(), Underlay: h.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p, nh
}

// container is a network namespace held by a sleeping process, reached as
// the agent reaches a container's: /proc/PID/ns/net.
type container struct {
	pid int
}

func (c container) ns() string { return fmt.Sprintf("/proc/%d/ns/net", c.pid) }

// handle is a netlink socket in c's namespace.
func (c container) handle(t testing.TB) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(c.ns())
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

func newContainer(t testing.TB) container {
	t.Helper()
	cmd := exec.Command("unshare", "--net", "sleep", "600")
	// No Pdeathsig: it fires when the forking thread exits, and inNS ends
	// threads. t.Cleanup kills it; a crashed run leaves a sleep that ends.
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := container{pid: cmd.Process.Pid}
	// unshare execs sleep once the namespace is made. (Comparing with
	// /proc/self/ns/net would not do: that is the main thread's, which a
	// goroutine that ended locked in a test host's namespace can leave
	// there, since the runtime parks the main thread rather than end it.)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", c.pid)); string(comm) == "sleep\n" {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatal("the container's network namespace did not appear")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// inNS runs fn on a thread in the namespace at path.
func inNS(t testing.TB, path string, fn func() error) error {
	t.Helper()
	return testhost.InNetns(path, fn)
}

// serve answers each connection to addr, in c, with word.
func serve(t testing.TB, c container, addr, word string) {
	t.Helper()
	var ln net.Listener
	if err := inNS(t, c.ns(), func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(conn, word)
			conn.Close()
		}
	}()
}

// fetch connects from c to addr and returns what it says.
func fetch(t testing.TB, c container, addr string, timeout time.Duration) (string, error) {
	t.Helper()
	var got []byte
	err := inNS(t, c.ns(), func() error {
		conn, err := net.DialTimeout("tcp", addr, timeout)
		if err != nil {
			return err
		}
		defer conn.Close()
		got, err = io.ReadAll(conn)
		return err
	})
	return string(got), err
}

func mustDo(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// ours lists the links of the Plane's prefix in n's namespace.
func ours(t *testing.T, n *node) []string {
	t.Helper()
	links, err := n.h.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, DefaultPrefix) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("dataplane: skipped, needs root (network namespaces, netlink)")
		os.Exit(0)
	}
	if err := testhost.Sweep(context.Background(), nil); err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
	}
	os.Exit(m.Run())
}

var (
	netA = Network{ID: "a", VNI: 4097, Subnet: netip.MustParsePrefix("10.77.0.0/24"), Gateway: netip.MustParseAddr("10.77.0.1")}
	netB = Network{ID: "b", VNI: 4098, Subnet: netip.MustParsePrefix("10.78.0.0/24"), Gateway: netip.MustParseAddr("10.78.0.1")}
)

func ep(task string, n Network, addr string) Endpoint {
	return Endpoint{TaskID: task, NetworkID: n.ID, Addr: netip.PrefixFrom(netip.MustParseAddr(addr), n.Subnet.Bits()), IfName: "eth0", DefaultRoute: true}
}

// nftChains lists the chains of the Plane's table in n's namespace.
func nftChains(t *testing.T, n *node) []*nftables.Chain {
	t.Helper()
	c, err := n.plane.nft()
	mustDo(t, err)
	defer c.CloseLasting()
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	mustDo(t, err)
	return slices.DeleteFunc(chains, func(ch *nftables.Chain) bool { return ch.Table.Name != n.plane.prefix })
}

// nftTables lists the nftables tables of the Plane's prefix in n's namespace.
func nftTables(t *testing.T, n *node) []string {
	t.Helper()
	c, err := n.plane.nft()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTables()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, tb := range tables {
		if strings.HasPrefix(tb.Name, DefaultPrefix) {
			out = append(out, tb.Name)
		}
	}
	return out
}
