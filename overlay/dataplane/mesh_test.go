package dataplane

import (
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/testhost"
)

// TestMeshLoopCut: three nodes whose views of a service disagree (h1
// thinks h2 runs it, h2 thinks h3 does, h3 thinks h1 does, and none runs
// it) refuse a client at once, and the connection makes one hop: h2 sees
// it and does not pass it on, h3 never sees it. Then, with the task on h2,
// a client outside the cluster and a host client on h2 itself both reach
// it through h1 (a host client on a node running the task is no
// forwarded connection).
func TestMeshLoopCut(t *testing.T) {
	cl := testhost.NewT(t, 4)
	a, b, c, client := newNode(t, cl.Hosts[0]), newNode(t, cl.Hosts[1]), newNode(t, cl.Hosts[2]), cl.Hosts[3]
	port := []PublishedPort{{Protocol: unix.IPPROTO_TCP, Port: 8080, Target: 80}}
	remote := func(n, to *node) {
		mustDo(t, n.plane.SetPublished([]Published{{ServiceID: "web", Ports: port, Remote: []netip.Addr{to.host.Addr}}}))
	}
	remote(a, b)
	remote(b, c)
	remote(c, a)
	at := func(n *node) string { return netip.AddrPortFrom(n.host.Addr, 8080).String() }

	syns := map[*node]func() int{a: countSYNs(t, a, 8080), b: countSYNs(t, b, 8080), c: countSYNs(t, c, 8080)}
	start := time.Now()
	got, err := fetchIn(t, client, at(a))
	took := time.Since(start)
	if !errors.Is(err, unix.ECONNREFUSED) {
		t.Errorf("client → h1:8080 with the nodes' views in a loop: %q, %v after %s; want refused at once", got, err, took)
	}
	t.Logf("refused after %s", took)
	for _, w := range []struct {
		n    *node
		want int
	}{{a, 1}, {b, 1}, {c, 0}} {
		if n := syns[w.n](); n != w.want {
			t.Errorf("%s got %d SYNs to port 8080, want %d (the loop cut after one hop)", w.n.host.Name, n, w.want)
		}
	}

	mustDo(t, b.plane.SetNetwork(netA))
	task := newContainer(t)
	e := ep("t1", netA, "10.77.0.21")
	mustDo(t, b.plane.Attach(task.ns(), e))
	serveRemote(t, task, ":80")
	mustDo(t, b.plane.SetPublished([]Published{{ServiceID: "web", Ports: port, Local: []netip.Addr{e.Addr.Addr()}}}))
	remote(c, b)
	for _, from := range []*testhost.Host{client, b.host, c.host} {
		if got, err := fetchIn(t, from, at(a)); err != nil || got != a.host.Addr.String() {
			t.Errorf("%s → h1:8080 (task on h2): the task saw %q, %v; want h1 %s, which forwarded it", from.Name, got, err, a.host.Addr)
		}
	}
}

// countSYNs counts, in a table of the test's in n's namespace, the SYNs to
// port that reach n from outside; read returns the count so far.
func countSYNs(t *testing.T, n *node, port uint16) (read func() int) {
	t.Helper()
	nft := func(script string) string {
		t.Helper()
		cmd := exec.Command("nsenter", "--net="+n.host.NetnsPath(), "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nft in %s: %v\n%s", n.host.Name, err, out)
		}
		return string(out)
	}
	nft(fmt.Sprintf(`table ip meshtest {
	chain syn {
		type filter hook prerouting priority -400; policy accept;
		tcp dport %d tcp flags & (syn|ack) == syn counter
	}
}`, port))
	counter := regexp.MustCompile(`counter packets (\d+)`)
	return func() int {
		m := counter.FindStringSubmatch(nft("list chain ip meshtest syn"))
		if m == nil {
			t.Fatalf("no counter in %s's meshtest table", n.host.Name)
		}
		v, _ := strconv.Atoi(m[1])
		return v
	}
}
