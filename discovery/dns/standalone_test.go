package dns

import (
	"slices"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestStandaloneContainerAnswers: a standalone container on an attachable
// network reaches the agent as a dnsrr service of one task, both named
// after the container (manager/dispatcher's attachment endpoints): its
// name and aliases answer its address, its address answers its name, and
// a service's task asking gets the same.
func TestStandaloneContainerAnswers(t *testing.T) {
	s := newServer(t)
	at := setNet(t, s, testNet("n1", 1))
	svcs := append(backend(), Service{ID: "att1", Name: "box", NetworkID: "n1", Aliases: []string{"boxy"},
		Tasks: []Task{{ID: "att1", Name: "box", Addr: addr("127.77.1.20"), Ready: true}}})
	s.Apply(Update{Set: svcs})
	for _, tc := range []struct {
		from, name string
		qtype      uint16
		want       []string
	}{
		{"127.77.1.11", "box", mdns.TypeA, []string{"127.77.1.20"}},  // a service's task asks
		{"127.77.1.11", "boxy", mdns.TypeA, []string{"127.77.1.20"}}, // by alias
		{"127.77.1.11", "20.1.77.127.in-addr.arpa", mdns.TypePTR, []string{"ptr box."}},
		{"127.77.1.20", "web", mdns.TypeA, []string{"127.77.1.100"}}, // the container asks
	} {
		r := ask(t, "udp", at, addr(tc.from), tc.name, tc.qtype)
		if got := addrsOf(r); r.Rcode != mdns.RcodeSuccess || !slices.Equal(got, tc.want) {
			t.Errorf("%s from %s: rcode %s, answer %v; want %v", tc.name, tc.from, mdns.RcodeToString[r.Rcode], got, tc.want)
		}
	}
}
