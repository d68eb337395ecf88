package dns

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// backend is network 1's services: web (VIP, alias www, two of three
// tasks ready), rr (dnsrr) and a global service's task.
func backend() []Service {
	return []Service{
		{ID: "s1", Name: "web", NetworkID: "n1", VIP: addr("127.77.1.100"), Aliases: []string{"www"}, Tasks: []Task{
			{ID: "t1", Name: "web.1.t1", Addr: addr("127.77.1.11"), Ready: true},
			{ID: "t2", Name: "web.2.t2", Addr: addr("127.77.1.12"), Ready: true},
			{ID: "t3", Name: "web.3.t3", Addr: addr("127.77.1.13")}, // starting, or unhealthy
		}},
		{ID: "s2", Name: "rr", NetworkID: "n1", Tasks: []Task{
			{ID: "t4", Name: "rr.1.t4", Addr: addr("127.77.1.14"), Ready: true},
			{ID: "t5", Name: "rr.2.t5", Addr: addr("127.77.1.15"), Ready: true},
		}},
		{ID: "s3", Name: "agent", NetworkID: "n1", VIP: addr("127.77.1.101"), Tasks: []Task{
			{ID: "t6", Name: "agent.node9.t6", Addr: addr("127.77.1.16"), Ready: true},
		}},
	}
}

func TestAnswers(t *testing.T) {
	up := startUpstream(t)
	s := newServer(t, up.addr)
	at := setNet(t, s, testNet("n1", 1))
	s.Apply(Update{Set: backend()})
	client := addr("127.77.1.11")
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string // sorted
		ttl   uint32
	}{
		{"web", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.100"}, VIPTTL},
		{"WeB.", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.100"}, VIPTTL},
		{"www", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.100"}, VIPTTL},
		{"tasks.web", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.11", "127.77.1.12"}, TaskTTL},
		{"tasks.www", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.11", "127.77.1.12"}, TaskTTL},
		{"web", mdns.TypeAAAA, mdns.RcodeSuccess, nil, 0},
		{"web", mdns.TypeMX, mdns.RcodeSuccess, nil, 0},
		{"rr", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.14", "127.77.1.15"}, TaskTTL},
		{"web.1.t1", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.11"}, TaskTTL},
		{"agent.node9.t6", mdns.TypeA, mdns.RcodeSuccess, []string{"127.77.1.16"}, TaskTTL},
		{"11.1.77.127.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"ptr web.1.t1."}, TaskTTL},
		{"100.1.77.127.in-addr.arpa", mdns.TypePTR, mdns.RcodeSuccess, []string{"ptr web."}, TaskTTL},
		{"nosuch", mdns.TypeA, mdns.RcodeNameError, nil, 0},
		{"tasks.nosuch", mdns.TypeA, mdns.RcodeNameError, nil, 0},
		{"tasks.web.extra", mdns.TypeA, mdns.RcodeNameError, nil, 0},
		{"99.1.77.127.in-addr.arpa", mdns.TypePTR, mdns.RcodeNameError, nil, 0},
		{"example.com", mdns.TypeA, mdns.RcodeSuccess, []string{"192.0.2.1"}, 300},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			r := ask(t, proto, at, client, tc.name, tc.qtype)
			got := addrsOf(r)
			slices.Sort(got)
			if r.Rcode != tc.rcode || !slices.Equal(got, tc.want) {
				t.Errorf("%s %s %s: rcode %s, answer %v; want %s, %v", proto, tc.name, mdns.TypeToString[tc.qtype],
					mdns.RcodeToString[r.Rcode], got, mdns.RcodeToString[tc.rcode], tc.want)
				continue
			}
			for _, rr := range r.Answer {
				if rr.Header().Ttl != tc.ttl {
					t.Errorf("%s %s: TTL %d, want %d", proto, tc.name, rr.Header().Ttl, tc.ttl)
				}
			}
			ours := !strings.Contains(tc.name, "example")
			if r.Authoritative != ours || !r.RecursionAvailable {
				t.Errorf("%s %s: AA %v RA %v; want AA %v and RA", proto, tc.name, r.Authoritative, r.RecursionAvailable, ours)
			}
		}
	}
	// Names in our scope never left the node.
	for _, name := range up.asked() {
		if !strings.Contains(name, "example") {
			t.Errorf("the upstream was asked %q, a name of ours", name)
		}
	}
}

// TestScopedPerNetwork: a network's names are answered only to its own
// members, on its own address; a task on two networks gets both.
func TestScopedPerNetwork(t *testing.T) {
	s := newServer(t)
	a := setNet(t, s, testNet("n1", 1))
	b := setNet(t, s, testNet("n2", 2))
	s.Apply(Update{Set: append(backend(),
		Service{ID: "s9", Name: "db", NetworkID: "n2", VIP: addr("127.77.2.100"), Tasks: []Task{
			{ID: "t9", Name: "db.1.t9", Addr: addr("127.77.2.9"), Ready: true}}},
		// t7 is on both networks.
		Service{ID: "s7", Name: "both", NetworkID: "n1", VIP: addr("127.77.1.107"), Tasks: []Task{{ID: "t7", Addr: addr("127.77.1.7")}}},
		Service{ID: "s7", Name: "both", NetworkID: "n2", VIP: addr("127.77.2.107"), Tasks: []Task{{ID: "t7", Addr: addr("127.77.2.7")}}},
	)})
	for _, tc := range []struct {
		server  netip.AddrPort
		src     string
		name    string
		rcode   int
		answers []string
	}{
		{a, "127.77.1.11", "web", mdns.RcodeSuccess, []string{"127.77.1.100"}},
		{a, "127.77.1.11", "db", mdns.RcodeNameError, nil},                    // db is on n2 only
		{b, "127.77.2.9", "web", mdns.RcodeNameError, nil},                    // web is on n1 only
		{a, "127.77.2.9", "web", mdns.RcodeRefused, nil},                      // an n2 member asking n1's address
		{b, "127.77.2.7", "web", mdns.RcodeSuccess, []string{"127.77.1.100"}}, // t7 is on both
		{a, "127.77.1.7", "db", mdns.RcodeSuccess, []string{"127.77.2.100"}},
		{a, "127.77.1.7", "both", mdns.RcodeSuccess, []string{"127.77.1.107"}}, // the asking network first
		{b, "127.77.2.7", "both", mdns.RcodeSuccess, []string{"127.77.2.107"}},
	} {
		r := ask(t, "udp", tc.server, addr(tc.src), tc.name, mdns.TypeA)
		if got := addrsOf(r); r.Rcode != tc.rcode || !slices.Equal(got, tc.answers) {
			t.Errorf("%s asking %s for %s: %s %v; want %s %v", tc.src, tc.server, tc.name,
				mdns.RcodeToString[r.Rcode], got, mdns.RcodeToString[tc.rcode], tc.answers)
		}
	}
	// Reverse names of the other network's addresses are neither answered
	// nor sent out (the server has no upstream: a forwarded name would get
	// SERVFAIL).
	if r := ask(t, "udp", b, addr("127.77.2.9"), "11.1.77.127.in-addr.arpa.", mdns.TypePTR); r.Rcode != mdns.RcodeNameError {
		t.Errorf("PTR of an n1 task asked from n2: %s %v, want NXDOMAIN", mdns.RcodeToString[r.Rcode], addrsOf(r))
	}

	// A removed network's address stops answering; its names go.
	s.RemoveNetwork("n2")
	if _, err := exchange("udp", b, addr("127.77.2.9"), "db", mdns.TypeA); err == nil {
		t.Fatal("n2's address still answers after RemoveNetwork")
	}
	if r := ask(t, "udp", a, addr("127.77.1.7"), "db", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("db after n2 was removed: %s %v", mdns.RcodeToString[r.Rcode], addrsOf(r))
	}
}

// TestUpdatesShowAtOnce: an Apply is visible to the next query: a task
// turning ready, dying, a service leaving.
func TestUpdatesShowAtOnce(t *testing.T) {
	s := newServer(t)
	at := setNet(t, s, testNet("n1", 1))
	src := addr("127.77.1.50")
	web := Service{ID: "s1", Name: "web", NetworkID: "n1", Tasks: []Task{{ID: "t1", Name: "web.1.t1", Addr: addr("127.77.1.11")}}}
	s.Apply(Update{Set: []Service{web}})
	if r := ask(t, "udp", at, src, "tasks.web", mdns.TypeA); r.Rcode != mdns.RcodeSuccess || len(r.Answer) != 0 {
		t.Fatalf("a task not ready yet is answered: %s %v", mdns.RcodeToString[r.Rcode], addrsOf(r))
	}
	web.Tasks = []Task{{ID: "t1", Name: "web.1.t1", Addr: addr("127.77.1.11"), Ready: true}, {ID: "t2", Name: "web.2.t2", Addr: addr("127.77.1.12"), Ready: true}}
	s.Apply(Update{Set: []Service{web}})
	if got := addrsOf(ask(t, "udp", at, src, "web", mdns.TypeA)); len(got) != 2 {
		t.Fatalf("dnsrr web with two ready tasks: %v", got)
	}
	web.Tasks = web.Tasks[1:] // t1 died
	s.Apply(Update{Set: []Service{web}})
	for _, name := range []string{"web", "tasks.web"} {
		if got := addrsOf(ask(t, "udp", at, src, name, mdns.TypeA)); !slices.Equal(got, []string{"127.77.1.12"}) {
			t.Fatalf("%s after t1 died: %v", name, got)
		}
	}
	if r := ask(t, "udp", at, src, "web.1.t1", mdns.TypeA); r.Rcode == mdns.RcodeSuccess && len(r.Answer) > 0 {
		t.Fatalf("the dead task's name still answers: %v", addrsOf(r))
	}
	s.Apply(Update{Remove: []Key{{ServiceID: "s1", NetworkID: "n1"}}})
	if r := ask(t, "udp", at, src, "web", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("web after its removal: %s %v", mdns.RcodeToString[r.Rcode], addrsOf(r))
	}
	s.Apply(Update{Set: []Service{web}})
	s.Apply(Update{Full: true})
	if r := ask(t, "udp", at, src, "web", mdns.TypeA); r.Rcode != mdns.RcodeNameError {
		t.Fatalf("web after a full update without it: %s", mdns.RcodeToString[r.Rcode])
	}
}

// TestLargeAnswers: 100 tasks do not fit a plain UDP answer: it is
// truncated (TC) and the client gets them all over TCP; dnsrr answers
// start at different tasks.
func TestLargeAnswers(t *testing.T) {
	s := newServer(t)
	at := setNet(t, s, testNet("n1", 1))
	svc := Service{ID: "s1", Name: "many", NetworkID: "n1"}
	for i := range 100 {
		svc.Tasks = append(svc.Tasks, Task{ID: fmt.Sprint(i), Name: fmt.Sprintf("many.%d.x%d", i+1, i),
			Addr: addr(fmt.Sprintf("127.77.1.%d", 100+i)), Ready: true})
	}
	s.Apply(Update{Set: []Service{svc}})
	src := addr("127.77.1.2")
	u := ask(t, "udp", at, src, "tasks.many", mdns.TypeA)
	if !u.Truncated || len(u.Answer) == 0 || len(u.Answer) >= 100 {
		t.Fatalf("udp: TC %v with %d answers; want truncated", u.Truncated, len(u.Answer))
	}
	if u.Compress = true; u.Len() > 512 {
		t.Fatalf("udp answer is %d bytes, over 512", u.Len())
	}
	r := ask(t, "tcp", at, src, "tasks.many", mdns.TypeA)
	if r.Truncated || len(r.Answer) != 100 {
		t.Fatalf("tcp: TC %v with %d answers; want all 100", r.Truncated, len(r.Answer))
	}
	first := map[string]bool{}
	for range 20 {
		first[addrsOf(ask(t, "udp", at, src, "many", mdns.TypeA))[0]] = true
	}
	if len(first) < 2 {
		t.Fatalf("20 dnsrr answers all started with %v", first)
	}
}

// TestForwarder: other names go to the upstreams in turn, over the
// client's transport; a dead upstream is skipped, none gives SERVFAIL, and
// the server never forwards to itself.
func TestForwarder(t *testing.T) {
	up := startUpstream(t)
	dead := netip.MustParseAddrPort("127.0.0.1:9") // discard: nothing answers DNS there
	var ups atomic.Pointer[[]netip.AddrPort]
	s := New(Config{Upstreams: func() []netip.AddrPort { return *ups.Load() }})
	t.Cleanup(s.Close)
	at := setNet(t, s, testNet("n1", 1))
	src := addr("127.77.1.2")
	ups.Store(&[]netip.AddrPort{at, dead, up.addr})
	if got := addrsOf(ask(t, "udp", at, src, "example.com", mdns.TypeA)); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("forwarded answer: %v", got)
	}
	u := ask(t, "udp", at, src, "big.example", mdns.TypeA)
	r := ask(t, "tcp", at, src, "big.example", mdns.TypeA)
	if !u.Truncated || r.Truncated || len(r.Answer) != 60 {
		t.Fatalf("big.example: udp TC %v, tcp TC %v with %d answers; want the TCP answer whole", u.Truncated, r.Truncated, len(r.Answer))
	}
	ups.Store(&[]netip.AddrPort{})
	if r := ask(t, "udp", at, src, "example.com", mdns.TypeA); r.Rcode != mdns.RcodeServerFailure {
		t.Fatalf("no upstream: %s, want SERVFAIL", mdns.RcodeToString[r.Rcode])
	}
}

func TestParseResolv(t *testing.T) {
	r := ParseResolv([]byte("# comment\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver bogus\nsearch a.example b.example\noptions ndots:2 timeout:1\noptions rotate\n"))
	want := []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:53"), netip.MustParseAddrPort("[fe80::1%eth0]:53")}
	if !slices.Equal(r.Nameservers, want) || !slices.Equal(r.Search, []string{"a.example", "b.example"}) ||
		!slices.Equal(r.Options, []string{"ndots:2", "timeout:1", "rotate"}) {
		t.Fatalf("ParseResolv = %+v", r)
	}
}

// TestResolvFileFollowsChanges: the host's resolv.conf is read again when
// it changes (checked at most once a second), and a missing one has no
// nameservers.
func TestResolvFileFollowsChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	now := time.Unix(1000, 0)
	r := ResolvConf(path, slog.New(slog.DiscardHandler))
	r.now = func() time.Time { return now }
	if got := r.Upstreams(); len(got) != 0 {
		t.Fatalf("missing file: %v", got)
	}
	write := func(body string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	write("nameserver 10.0.0.2\n", time.Unix(1, 0))
	now = now.Add(2 * time.Second)
	if got := r.Upstreams(); !slices.Equal(got, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:53")}) {
		t.Fatalf("first read: %v", got)
	}
	write("nameserver 10.0.0.3\n", time.Unix(2, 0))
	if got := r.Upstreams(); got[0].Addr() != addr("10.0.0.2") {
		t.Fatalf("read again within a second: %v", got)
	}
	now = now.Add(2 * time.Second)
	if got := r.Upstreams(); got[0].Addr() != addr("10.0.0.3") {
		t.Fatalf("after the change: %v", got)
	}
}

// TestBesideAWildcardServer: a DNS server of the host listening on the
// wildcard address with SO_REUSEADDR (as dnsmasq does) does not keep a
// network from being served over UDP, and the caller learns that TCP is
// the other server's.
func TestBesideAWildcardServer(t *testing.T) {
	lc := net.ListenConfig{Control: reuseAddr}
	pc, err := lc.ListenPacket(t.Context(), "udp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	port := pc.LocalAddr().(*net.UDPAddr).Port
	ln, err := lc.Listen(t.Context(), "tcp", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Skipf("tcp port %d taken: %v", port, err)
	}
	defer ln.Close()
	s := newServer(t)
	n := testNet("n1", 1)
	n.Listen = netip.AddrPortFrom(addr("127.77.1.1"), uint16(port))
	if err := s.SetNetwork(t.Context(), n); !errors.Is(err, ErrUDPOnly) {
		t.Fatalf("SetNetwork beside a wildcard server: %v, want ErrUDPOnly", err)
	}
	s.Apply(Update{Set: backend()})
	if got := addrsOf(ask(t, "udp", n.Listen, addr("127.77.1.11"), "web", mdns.TypeA)); !slices.Equal(got, []string{"127.77.1.100"}) {
		t.Fatalf("web over UDP beside a wildcard server: %v", got)
	}
}
