package dataplane

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/testhost"
)

// TestPublish publishes a port of a service whose one task runs on h1,
// and connects from h3, a host outside the overlay: h1 answers from its
// task, which sees the client's own address; h2, running no task,
// answers too, forwarding to h1 (the task sees h2); a host-mode port
// answers only on h1; ports no longer published, and networks removed,
// leave no table behind. UDP is published the same way; a container
// reaching a task of its own network through the node's port is
// masqueraded (hairpin), so the answer comes back through the node.
func TestPublish(t *testing.T) {
	cl := testhost.NewT(t, 3)
	n1, n2, client := newNode(t, cl.Hosts[0]), newNode(t, cl.Hosts[1]), cl.Hosts[2]
	mustDo(t, n1.plane.SetNetwork(netA))
	task := newContainer(t)
	e := ep("t1", netA, "10.77.0.21")
	mustDo(t, n1.plane.Attach(task.ns(), e))
	serveRemote(t, task, ":80")
	serveRemote(t, task, ":81")
	echoUDP(t, task, ":82")
	ingress := PublishedPort{Protocol: unix.IPPROTO_TCP, Port: 8080, Target: 80}
	host := PublishedPort{Protocol: unix.IPPROTO_TCP, Port: 8081, Target: 81, Host: true}
	udp := PublishedPort{Protocol: unix.IPPROTO_UDP, Port: 8082, Target: 82}
	mustDo(t, n1.plane.SetPublished([]Published{{ServiceID: "web", Ports: []PublishedPort{ingress, host, udp}, Local: []netip.Addr{e.Addr.Addr()}}}))
	mustDo(t, n2.plane.SetPublished([]Published{{ServiceID: "web", Ports: []PublishedPort{ingress, host, udp}, Remote: []netip.Addr{n1.host.Addr}}}))

	at := func(n *node, port uint16) string { return netip.AddrPortFrom(n.host.Addr, port).String() }
	if got, err := fetchIn(t, client, at(n1, 8080)); err != nil || got != client.Addr.String() {
		t.Errorf("h3 → h1:8080 (task on h1): the task saw %q, %v; want the client %s", got, err, client.Addr)
	}
	if got, err := fetchIn(t, client, at(n2, 8080)); err != nil || got != n2.host.Addr.String() {
		t.Errorf("h3 → h2:8080 (no task on h2): the task saw %q, %v; want h2 %s, which forwarded it", got, err, n2.host.Addr)
	}
	if got, err := fetchIn(t, client, at(n1, 8081)); err != nil || got != client.Addr.String() {
		t.Errorf("h3 → h1:8081 (host mode, task on h1): %q, %v", got, err)
	}
	if got, err := fetchIn(t, client, at(n2, 8081)); err == nil {
		t.Errorf("h3 → h2:8081 (host mode, no task on h2) answered %q; want refused", got)
	}
	for _, n := range []*node{n1, n2} {
		if got, err := askUDP(t, client, at(n, 8082)); err != nil || got == "" {
			t.Errorf("h3 → %s:8082/udp: %q, %v", n.host.Name, got, err)
		}
	}
	peer := newContainer(t)
	mustDo(t, n1.plane.Attach(peer.ns(), ep("t2", netA, "10.77.0.22")))
	if got, err := fetch(t, peer, at(n1, 8080), 3*time.Second); err != nil || got != netA.Gateway.String() {
		t.Errorf("a container on the task's network → h1:8080: the task saw %q, %v; want the gateway %s (hairpin masquerade)", got, err, netA.Gateway)
	}

	// Many short connections through the forwarding node, none stalled.
	for i := range 200 {
		if _, err := fetchIn(t, client, at(n2, 8080)); err != nil {
			t.Fatalf("connection %d to h2:8080: %v", i, err)
		}
	}

	// A task that is no longer ready takes no new connection: h1 has none
	// to send to and does not forward it back to h2.
	mustDo(t, n1.plane.SetPublished([]Published{{ServiceID: "web", Ports: []PublishedPort{ingress}, Remote: []netip.Addr{n2.host.Addr}}}))
	mustDo(t, n2.plane.SetPublished([]Published{{ServiceID: "web", Ports: []PublishedPort{ingress}, Remote: []netip.Addr{n1.host.Addr}}}))
	if got, err := fetchIn(t, client, at(n2, 8080)); err == nil {
		t.Errorf("h3 → h2:8080 with no ready task anywhere answered %q; want refused", got)
	}

	for _, n := range []*node{n1, n2} {
		mustDo(t, n.plane.SetPublished(nil))
	}
	mustDo(t, n1.plane.Detach(e))
	mustDo(t, n1.plane.Detach(ep("t2", netA, "10.77.0.22")))
	mustDo(t, n1.plane.RemoveNetwork(netA.ID))
	for _, n := range []*node{n1, n2} {
		if tables := nftTables(t, n); len(tables) != 0 {
			t.Errorf("%s: tables left: %v", n.host.Name, tables)
		}
	}
}

// serveRemote answers each connection to addr, in c, with the address
// the connection came from.
func serveRemote(t *testing.T, c container, addr string) {
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
			io.WriteString(conn, conn.RemoteAddr().(*net.TCPAddr).IP.String())
			conn.Close()
		}
	}()
}

// fetchIn connects from test host h to addr and returns what it says.
func fetchIn(t *testing.T, h *testhost.Host, addr string) (string, error) {
	t.Helper()
	var got []byte
	err := inNS(t, h.NetnsPath(), func() error {
		conn, err := net.DialTimeout("tcp", addr, 3*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		got, err = io.ReadAll(conn)
		return err
	})
	return strings.TrimSpace(string(got)), err
}

// echoUDP answers each datagram to addr, in c, with the sender's address.
func echoUDP(t *testing.T, c container, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := inNS(t, c.ns(), func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(from.(*net.UDPAddr).IP.String()), from)
		}
	}()
}

// askUDP sends a datagram from test host h to addr and returns the answer.
func askUDP(t *testing.T, h *testhost.Host, addr string) (string, error) {
	t.Helper()
	var got string
	err := inNS(t, h.NetnsPath(), func() error {
		conn, err := net.Dial("udp", addr)
		if err != nil {
			return err
		}
		defer conn.Close()
		buf := make([]byte, 100)
		for range 3 { // a datagram may be lost; ask again
			conn.Write([]byte("?"))
			conn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := conn.Read(buf)
			if err == nil {
				got = string(buf[:n])
				return nil
			}
		}
		return errors.New("no answer")
	})
	return got, err
}
