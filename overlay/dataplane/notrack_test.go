package dataplane

import (
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"berth/internal/testhost"
)

// TestOverlayFlowsAreNotTracked: container-to-container connections
// across hosts, and the VXLAN packets carrying them, leave no entry in
// either node's connection-tracking table, with br_netfilter on (as
// Docker and Kubernetes leave it), while a connection to the gateway is
// still tracked (hairpin masquerade and DNS rely on it).
func TestOverlayFlowsAreNotTracked(t *testing.T) {
	cl := testhost.NewT(t, 2)
	n1, n2 := newNode(t, cl.Hosts[0]), newNode(t, cl.Hosts[1])
	for _, n := range []*node{n1, n2} {
		if err := inNS(t, n.host.NetnsPath(), func() error {
			return os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1\n"), 0o644)
		}); err != nil {
			t.Skipf("br_netfilter is off in this kernel (%v): no bridged packet meets conntrack", err)
		}
		mustDo(t, n.plane.SetNetwork(netA))
	}
	c1, c2 := newContainer(t), newContainer(t)
	e1, e2 := ep("t1", netA, "10.77.0.2"), ep("t2", netA, "10.77.0.3")
	mustDo(t, n1.plane.Attach(c1.ns(), e1))
	mustDo(t, n2.plane.Attach(c2.ns(), e2))
	mustDo(t, n1.plane.SetPeer(Peer{NetworkID: netA.ID, Addr: e2.Addr.Addr(), Node: n2.host.Addr}))
	mustDo(t, n2.plane.SetPeer(Peer{NetworkID: netA.ID, Addr: e1.Addr.Addr(), Node: n1.host.Addr}))
	serve(t, c2, "10.77.0.3:7000", "c2")
	gw := listenIn(t, n1.host.NetnsPath(), netA.Gateway.String()+":7001")

	for range 5 {
		if got, err := fetch(t, c1, "10.77.0.3:7000", 2*time.Second); err != nil || got != "c2" {
			t.Fatalf("c1 → c2 across hosts: %q, %v", got, err)
		}
	}
	if _, err := fetch(t, c1, gw, 2*time.Second); err != nil {
		t.Fatalf("c1 → its gateway %s: %v", gw, err)
	}
	for _, n := range []*node{n1, n2} {
		table := conntrack(t, n.host.NetnsPath())
		for _, e := range table {
			if strings.Contains(e, "src=10.77.0.2 dst=10.77.0.3") || strings.Contains(e, "src=10.77.0.3 dst=10.77.0.2") ||
				strings.Contains(e, "dport=4789") {
				t.Errorf("%s tracks an overlay flow: %s", n.host.Name, e)
			}
		}
		if n == n1 && !strings.Contains(strings.Join(table, "\n"), "dst="+netA.Gateway.String()) {
			t.Errorf("%s does not track c1's connection to the gateway; its table:\n%s", n.host.Name, strings.Join(table, "\n"))
		}
	}
}

// listenIn answers connections to addr in the namespace at path with
// "ok", and returns addr.
func listenIn(t *testing.T, path, addr string) string {
	t.Helper()
	var ln net.Listener
	mustDo(t, inNS(t, path, func() (err error) { ln, err = net.Listen("tcp", addr); return err }))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			io.WriteString(conn, "ok")
			conn.Close()
		}
	}()
	return addr
}

// conntrack lists the connection-tracking entries of the namespace at
// path, one line each.
func conntrack(t *testing.T, path string) []string {
	t.Helper()
	var raw []byte
	err := inNS(t, path, func() (err error) {
		raw, err = os.ReadFile("/proc/thread-self/net/nf_conntrack")
		return err
	})
	if os.IsNotExist(err) {
		t.Skip("this kernel has no /proc/net/nf_conntrack (CONFIG_NF_CONNTRACK_PROCFS) to read the table from")
	}
	mustDo(t, err)
	return strings.Split(strings.TrimSpace(string(raw)), "\n")
}

// TestIsolationChainOnlyWithTwoNetworks: on a node publishing no port
// (no loopback hop), the forward chain that isolates networks exists only
// while it has two networks or more; with one it would only cost every
// bridged frame a hook (under br_netfilter).
func TestIsolationChainOnlyWithTwoNetworks(t *testing.T) {
	cl := testhost.NewT(t, 1)
	n := newNode(t, cl.Hosts[0])
	has := func() bool {
		return slices.ContainsFunc(nftChains(t, n), func(ch *nftables.Chain) bool { return ch.Name == "isolate" })
	}
	mustDo(t, n.plane.SetNetwork(netA))
	if has() {
		t.Error("one network: the table has an isolation chain")
	}
	mustDo(t, n.plane.SetNetwork(netB))
	if !has() {
		t.Fatal("two networks: the table has no isolation chain")
	}
	mustDo(t, n.plane.RemoveNetwork(netB.ID))
	if has() {
		t.Error("back to one network: the isolation chain is still there")
	}
	mustDo(t, n.plane.SetNetwork(netB))
	if !has() {
		t.Error("two networks again: no isolation chain")
	}
}
