package dns

import (
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestSRVRecords: a service's ports answer as Kubernetes' do,
// _PORT._PROTO.SERVICE (and _NAME._PROTO.SERVICE for a named port) →
// the port at the service's name, or at each ready task's name with
// endpoint mode dnsrr; aliases too. Other types on those names have no
// data, and an SRV name of no port of ours is NXDOMAIN, never forwarded.
func TestSRVRecords(t *testing.T) {
	up := startUpstream(t)
	s := newServer(t, up.addr)
	at := setNet(t, s, testNet("n1", 1))
	svcs := backend()
	svcs[0].Ports = []Port{{Name: "http", Proto: "tcp", Target: 8080}, {Proto: "udp", Target: 5353}}
	svcs[1].Ports = []Port{{Proto: "tcp", Target: 6379}}
	s.Apply(Update{Set: svcs})
	client := addr("127.77.1.11")
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		want  []string // sorted
		ttl   uint32
	}{
		{"_8080._tcp.web", mdns.TypeSRV, mdns.RcodeSuccess, []string{"srv 0 0 8080 web."}, VIPTTL},
		{"_http._tcp.web", mdns.TypeSRV, mdns.RcodeSuccess, []string{"srv 0 0 8080 web."}, VIPTTL},
		{"_HTTP._TCP.WEB.", mdns.TypeSRV, mdns.RcodeSuccess, []string{"srv 0 0 8080 web."}, VIPTTL},
		{"_5353._udp.web", mdns.TypeSRV, mdns.RcodeSuccess, []string{"srv 0 0 5353 web."}, VIPTTL},
		{"_8080._tcp.www", mdns.TypeSRV, mdns.RcodeSuccess, []string{"srv 0 0 8080 www."}, VIPTTL},
		{"_6379._tcp.rr", mdns.TypeSRV, mdns.RcodeSuccess, []string{"srv 0 0 6379 rr.1.t4.", "srv 0 0 6379 rr.2.t5."}, TaskTTL},
		{"_8080._tcp.web", mdns.TypeA, mdns.RcodeSuccess, nil, 0},
		{"web", mdns.TypeSRV, mdns.RcodeSuccess, nil, 0},
		{"_8080._udp.web", mdns.TypeSRV, mdns.RcodeNameError, nil, 0},
		{"_9090._tcp.web", mdns.TypeSRV, mdns.RcodeNameError, nil, 0},
		{"_8080._tcp.nosuch", mdns.TypeSRV, mdns.RcodeNameError, nil, 0},
	} {
		for _, proto := range []string{"udp", "tcp"} {
			r := ask(t, proto, at, client, tc.name, tc.qtype)
			got := addrsOf(r)
			slices.Sort(got)
			if r.Rcode != tc.rcode || !slices.Equal(got, tc.want) || !r.Authoritative {
				t.Errorf("%s %s %s: rcode %s, answer %v, authoritative %t; want %s, %v", proto, tc.name, mdns.TypeToString[tc.qtype],
					mdns.RcodeToString[r.Rcode], got, r.Authoritative, mdns.RcodeToString[tc.rcode], tc.want)
				continue
			}
			for _, rr := range r.Answer {
				if rr.Header().Ttl != tc.ttl {
					t.Errorf("%s %s: TTL %d, want %d", proto, tc.name, rr.Header().Ttl, tc.ttl)
				}
			}
		}
	}
	if asked := up.asked(); len(asked) != 0 {
		t.Errorf("SRV names of ours were forwarded: %v", asked)
	}

	// A task that stops being ready leaves the dnsrr service's records.
	svcs[1].Tasks[0].Ready = false
	s.Apply(Update{Set: svcs})
	if got := addrsOf(ask(t, "udp", at, client, "_6379._tcp.rr", mdns.TypeSRV)); !slices.Equal(got, []string{"srv 0 0 6379 rr.2.t5."}) {
		t.Errorf("_6379._tcp.rr after rr.1 went unready: %v", got)
	}
}
