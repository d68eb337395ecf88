package dns

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// Test networks live on loopback: network i is 127.77.i.0/24, served on
// 127.77.i.1 (a free port), and a client on it sends from 127.77.i.x.
func testNet(id string, i int) Network {
	return Network{ID: id, Subnet: netip.MustParsePrefix(fmt.Sprintf("127.77.%d.0/24", i)),
		Listen: netip.MustParseAddrPort(fmt.Sprintf("127.77.%d.1:0", i))}
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// newServer starts a Server whose upstreams are ups, closed with the test.
func newServer(t testing.TB, ups ...netip.AddrPort) *Server {
	t.Helper()
	s := New(Config{Upstreams: func() []netip.AddrPort { return ups }})
	t.Cleanup(s.Close)
	return s
}

func setNet(t testing.TB, s *Server, n Network) netip.AddrPort {
	t.Helper()
	if err := s.SetNetwork(t.Context(), n); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Addr(n.ID)
	return a
}

// ask sends one query for name/qtype to server from src over proto
// ("udp" or "tcp").
func ask(t testing.TB, proto string, server netip.AddrPort, src netip.Addr, name string, qtype uint16) *mdns.Msg {
	t.Helper()
	r, err := exchange(proto, server, src, name, qtype)
	if err != nil {
		t.Fatalf("%s %s %s from %s to %s: %v", proto, name, mdns.TypeToString[qtype], src, server, err)
	}
	return r
}

func exchange(proto string, server netip.AddrPort, src netip.Addr, name string, qtype uint16) (*mdns.Msg, error) {
	c := &mdns.Client{Net: proto, Timeout: 5 * time.Second, Dialer: &net.Dialer{Timeout: 5 * time.Second}}
	if proto == "tcp" {
		c.Dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	} else {
		c.Dialer.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
	}
	m := new(mdns.Msg).SetQuestion(mdns.Fqdn(name), qtype)
	r, _, err := c.Exchange(m, server.String())
	return r, err
}

// addrsOf lists the A/AAAA addresses of r's answer, in order.
func addrsOf(r *mdns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		switch v := rr.(type) {
		case *mdns.A:
			out = append(out, v.A.String())
		case *mdns.AAAA:
			out = append(out, v.AAAA.String())
		case *mdns.PTR:
			out = append(out, "ptr "+v.Ptr)
		case *mdns.SRV:
			out = append(out, fmt.Sprintf("srv %d %d %d %s", v.Priority, v.Weight, v.Port, v.Target))
		}
	}
	return out
}

// upstream is a miekg server on loopback answering every A query with
// 192.0.2.1 (and "big." with enough records to need TCP), counting them.
type upstream struct {
	addr netip.AddrPort
	mu   sync.Mutex
	seen []string
}

func startUpstream(t testing.TB) *upstream {
	t.Helper()
	u := &upstream{}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		u.mu.Lock()
		u.seen = append(u.seen, req.Question[0].Name)
		u.mu.Unlock()
		r := new(mdns.Msg).SetReply(req)
		n := 1
		if req.Question[0].Name == "big.example." {
			n = 60
		}
		for i := range n {
			r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: req.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 300},
				A: net.IPv4(192, 0, 2, byte(1+i))})
		}
		if w.LocalAddr().Network() == "udp" {
			r.Truncate(512)
		}
		w.WriteMsg(r)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		pc.Close()
		t.Skipf("upstream tcp port %d taken: %v", port, err)
	}
	u.addr = netip.AddrPortFrom(addr("127.0.0.1"), uint16(port))
	for _, srv := range []*mdns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		go srv.ActivateAndServe()
		t.Cleanup(func() { srv.Shutdown() })
	}
	return u
}

func (u *upstream) asked() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.seen...)
}
