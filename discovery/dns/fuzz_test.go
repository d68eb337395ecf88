package dns

import (
	"encoding/binary"
	"net/netip"
	"testing"

	mdns "github.com/miekg/dns"
)

// FuzzDNSQuery feeds any bytes to the query handler as if they came from a
// client on network n1 (over UDP or TCP) and checks what a client would
// see: no panic; an answer that parses, carries the request's ID, is a
// response, fits the transport, and holds only addresses of the table; no
// answer to a response; a name asked the same way by either parser.
func FuzzDNSQuery(f *testing.F) {
	for _, m := range fuzzSeeds() {
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
		f.Add(b, true)
	}
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1}, false) // a pointer loop
	f.Add([]byte{0, 1}, false)
	n1 := testNet("n1", 1)
	svcs := backend()
	svcs[0].Ports = []Port{{Name: "http", Proto: "tcp", Target: 8080}}
	svcs[1].Ports = []Port{{Proto: "udp", Target: 53}}
	t0 := emptyTable().withZones(map[string]*zone{"n1": buildZone(n1, svcs)})
	known := map[netip.Addr]bool{}
	for _, s := range backend() {
		known[s.VIP] = true
		for _, tk := range s.Tasks {
			known[tk.Addr] = true
		}
	}
	f.Fuzz(func(t *testing.T, req []byte, tcp bool) {
		var q query
		out, fwd := respond(nil, &q, t0, t0.zones["n1"], addr("127.77.1.11"), req, tcp)
		if fwd && out != nil {
			t.Fatal("both an answer and a forward")
		}
		if len(req) >= 3 && req[2]&0x80 != 0 && (out != nil || fwd) {
			t.Fatal("answered a response")
		}
		checkSameName(t, req)
		if out == nil {
			return
		}
		r := new(mdns.Msg)
		if err := r.Unpack(out); err != nil {
			t.Fatalf("our answer does not parse: %v (%x)", err, out)
		}
		if r.Id != binary.BigEndian.Uint16(req) || !r.Response {
			t.Fatalf("answer ID %d response %v for request ID %d", r.Id, r.Response, binary.BigEndian.Uint16(req))
		}
		if !tcp && len(out) > maxUDP {
			t.Fatalf("UDP answer of %d bytes", len(out))
		}
		for _, rr := range r.Answer {
			var a netip.Addr
			switch v := rr.(type) {
			case *mdns.A:
				a, _ = netip.AddrFromSlice(v.A.To4())
			case *mdns.AAAA:
				a, _ = netip.AddrFromSlice(v.AAAA)
			case *mdns.PTR:
				continue
			case *mdns.SRV:
				if v.Port != 8080 && v.Port != 53 {
					t.Fatalf("SRV port %d, not in the table", v.Port)
				}
				continue
			default:
				t.Fatalf("answer of type %s", mdns.TypeToString[rr.Header().Rrtype])
			}
			if !known[a] {
				t.Fatalf("answered %s, not in the table", a)
			}
		}
	})
}

// checkSameName: when the fast parser takes a request, the slow one reads
// the same question from it.
func checkSameName(t *testing.T, req []byte) {
	var fast, slow query
	if !fast.parseFast(req) {
		return
	}
	if slow.parseSlow(req) != reqOK {
		return // miekg refuses what the fast path took: EDNS options it cannot read
	}
	if string(fast.name) != string(slow.name) || fast.qtype != slow.qtype || fast.qclass != slow.qclass {
		t.Fatalf("fast parser read %q %d/%d, slow %q %d/%d", fast.name, fast.qtype, fast.qclass, slow.name, slow.qtype, slow.qclass)
	}
}

func fuzzSeeds() []*mdns.Msg {
	q := func(name string, qtype uint16) *mdns.Msg { return new(mdns.Msg).SetQuestion(name, qtype) }
	edns := q("tasks.web.", mdns.TypeA).SetEdns0(4096, true)
	v1 := q("web.", mdns.TypeA).SetEdns0(1232, false)
	v1.IsEdns0().SetVersion(1)
	two := q("web.", mdns.TypeA)
	two.Question = append(two.Question, two.Question[0])
	notify := q("web.", mdns.TypeSOA)
	notify.Opcode = mdns.OpcodeNotify
	resp := q("web.", mdns.TypeA)
	resp.Response = true
	chaos := q("version.bind.", mdns.TypeTXT)
	chaos.Question[0].Qclass = mdns.ClassCHAOS
	return []*mdns.Msg{
		q("web.", mdns.TypeA), q("WWW.", mdns.TypeANY), q("rr.", mdns.TypeA), q("web.1.t1.", mdns.TypeAAAA),
		q("11.1.77.127.in-addr.arpa.", mdns.TypePTR), q("nosuch.", mdns.TypeA), q("example.com.", mdns.TypeA),
		q("_8080._tcp.web.", mdns.TypeSRV), q("_http._tcp.www.", mdns.TypeANY), q("_53._udp.rr.", mdns.TypeSRV),
		q(`we\.b.`, mdns.TypeA), q(".", mdns.TypeNS), edns, v1, two, notify, resp, chaos,
	}
}
