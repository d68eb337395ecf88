package agent

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	pb "berth/proto/berth/v1"
)

// TestNamesFollowAssignments: the agent's DNS server answers what the
// assignment stream's networks and endpoints say, change by change, and
// a task's resolv.conf points at its network's server.
func TestNamesFollowAssignments(t *testing.T) {
	dir := t.TempDir()
	host := filepath.Join(dir, "host-resolv.conf")
	if err := os.WriteFile(host, []byte("nameserver 127.0.0.1\nsearch corp.example\noptions ndots:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := newNames(filepath.Join(dir, "resolv"), host, testLogger())
	n.port = 0 // any free port on loopback
	t.Cleanup(n.close)
	net1 := &pb.Network{Id: "n1", Subnet: "127.78.1.0/24", Gateway: "127.78.1.1"}
	web := &pb.ServiceEndpoint{ServiceId: "s1", ServiceName: "web", NetworkId: "n1", Vip: "127.78.1.100/24",
		Mode: pb.EndpointSpec_MODE_VIP, Aliases: []string{"www"}, Tasks: []*pb.EndpointTask{
			{TaskId: "t1", Name: "web.1.t1", Address: "127.78.1.11/24", Ready: true},
			{TaskId: "t2", Name: "web.2.t2", Address: "127.78.1.12/24", Ready: true}}}
	n.apply(t.Context(), true, []*pb.AssignmentChange{
		{Item: &pb.AssignmentChange_Network{Network: net1}},
		{Item: &pb.AssignmentChange_Endpoint{Endpoint: web}},
	})
	at, ok := n.srv.Addr("n1")
	if !ok {
		t.Fatal("network n1 is not served after a full assignment with it")
	}
	ask := func(name string) (int, []string) {
		t.Helper()
		c := &mdns.Client{Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.IPv4(127, 78, 1, 11)}}}
		r, _, err := c.Exchange(new(mdns.Msg).SetQuestion(name, mdns.TypeA), at.String())
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var got []string
		for _, rr := range r.Answer {
			got = append(got, rr.(*mdns.A).A.String())
		}
		slices.Sort(got)
		return r.Rcode, got
	}
	for name, want := range map[string][]string{"web.": {"127.78.1.100"}, "www.": {"127.78.1.100"},
		"tasks.web.": {"127.78.1.11", "127.78.1.12"}, "web.2.t2.": {"127.78.1.12"}} {
		if _, got := ask(name); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}

	// t2 stops being ready (a failing health check): it leaves the answers.
	web.Tasks[1].Ready = false
	n.apply(t.Context(), false, []*pb.AssignmentChange{{Item: &pb.AssignmentChange_Endpoint{Endpoint: web}}})
	if _, got := ask("tasks.web."); !slices.Equal(got, []string{"127.78.1.11"}) {
		t.Fatalf("tasks.web. with t2 unhealthy = %v", got)
	}

	// The task's resolv.conf: the network's server, the host's search and options.
	mounts, err := n.Mounts(&pb.Task{Id: "t1", Networks: []*pb.NetworkAttachmentStatus{{NetworkId: "n1", Addresses: []string{"127.78.1.11/24"}}}})
	if err != nil || len(mounts) != 1 || mounts[0].Target != "/etc/resolv.conf" || !mounts[0].ReadOnly {
		t.Fatalf("Mounts = %+v, %v", mounts, err)
	}
	b, _ := os.ReadFile(mounts[0].Source)
	for _, line := range []string{"nameserver 127.78.1.1\n", "search corp.example\n", "options ndots:2\n"} {
		if !strings.Contains(string(b), line) {
			t.Errorf("resolv.conf lacks %q:\n%s", line, b)
		}
	}
	if m, err := n.Mounts(&pb.Task{Id: "t9"}); err != nil || m != nil {
		t.Fatalf("a task on no network got %v, %v; want its image's resolv.conf", m, err)
	}
	if err := n.Remove("t1"); err != nil || len(n.IDs()) != 0 {
		t.Fatalf("Remove: %v, left %v", err, n.IDs())
	}

	// The endpoint goes: NXDOMAIN. Then a full assignment without n1.
	n.apply(t.Context(), false, []*pb.AssignmentChange{{Action: pb.AssignmentChange_ACTION_REMOVE,
		Item: &pb.AssignmentChange_Endpoint{Endpoint: &pb.ServiceEndpoint{ServiceId: "s1", NetworkId: "n1"}}}})
	if rcode, got := ask("web."); rcode != mdns.RcodeNameError {
		t.Fatalf("web. after its endpoint was removed: %s %v", mdns.RcodeToString[rcode], got)
	}
	n.apply(t.Context(), true, nil)
	if _, ok := n.srv.Addr("n1"); ok {
		t.Fatal("n1 still served after a full assignment without it")
	}
}
