package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netns"

	"berth/internal/e2ecluster"
	"berth/internal/testhost"
	pb "berth/proto/berth/v1"
)

// TestDNSOnRealHosts: containers on three hosts find each other by
// SERVICE, tasks.SERVICE, alias and task name through their node's DNS
// server, and connect by those names; a killed task leaves the answers and
// its replacement joins them; a container on another network gets no
// answer about this one; other names go to the node's resolver (a DNS
// server this test runs on a spare host).
func TestDNSOnRealHosts(t *testing.T) {
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	c := upWith(t, e2ecluster.Options{Managers: 1, Agents: 3, SpareHosts: 1, AgentArgs: []string{"--resolv-conf", resolv}})
	ctx := t.Context()
	up := startUpstream(t, c.Hosts.Hosts[len(c.Hosts.Hosts)-1])
	if err := os.WriteFile(resolv, []byte("nameserver "+up.addr.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"back", "other"} {
		if _, err := c.CLI(ctx, "network", "create", n); err != nil {
			t.Fatal(err)
		}
	}
	a3 := c.Agents[2].Name
	for _, args := range [][]string{
		{"--name", "web", "--replicas", "3", "--replicas-max-per-node", "1", "--network", "name=back,alias=site", "--publish", "8080:8080", c.Images.AppV1.Tag},
		{"--name", "rr", "--endpoint-mode", "dnsrr", "--replicas", "2", "--network", "back", "--constraint", "node.hostname!=" + a3, c.Images.AppV1.Tag},
		{"--name", "probe", "--network", "back", "--constraint", "node.hostname==" + a3, c.Images.Busybox.Tag, "sleep", "3600"},
		{"--name", "outsider", "--network", "other", "--constraint", "node.hostname==" + a3, c.Images.Busybox.Tag, "sleep", "3600"},
	} {
		if _, err := c.CLI(ctx, append([]string{"service", "create", "--detach"}, args...)...); err != nil {
			t.Fatal(err)
		}
	}
	for svc, n := range map[string]int{"web": 3, "rr": 2, "probe": 1, "outsider": 1} {
		runningOn(t, c, svc, n)
	}
	probe := liveTasks(t, c, "probe")[1]
	outsider := liveTasks(t, c, "outsider")[1]
	gw := nameserver(t, probe)
	web, err := inspectService(ctx, c.CLI, "web")
	if err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParsePrefix(web.GetEndpoint().GetVirtualIps()[0].GetAddr()).Addr().String()
	webTasks, rrTasks := liveTasks(t, c, "web"), liveTasks(t, c, "rr")
	webAddrs, rrAddrs := addrsOfTasks(webTasks), addrsOfTasks(rrTasks)
	victim := webTasks[1]
	victimName := fmt.Sprintf("web.1.%s", victim.GetId())

	// What a user sees in the probe container on a3: nslookup through
	// its /etc/resolv.conf.
	for name, want := range map[string][]string{
		"web": {vip}, "site": {vip}, "tasks.web": webAddrs, "tasks.site": webAddrs, "rr": rrAddrs, "tasks.rr": rrAddrs,
		victimName: {taskAddrOf(victim)}, "ext.example": {"192.0.2.77"},
	} {
		if got := nslookup(t, c, "probe", name); !slices.Equal(got, want) {
			t.Errorf("nslookup %s in probe = %v, want %v", name, got, want)
		}
	}
	if out, _, err := cliOut(ctx, c, "exec", "probe", "--", "nslookup", "-type=a", "nosuch"); err == nil || !strings.Contains(out, "NXDOMAIN") {
		t.Errorf("nslookup nosuch: %v %q, want NXDOMAIN", err, out)
	}
	// SRV records for the published port, as Kubernetes names them.
	for _, name := range []string{"_8080._tcp.web.", "_8080._tcp.site."} {
		r, err := askTypeFrom(probe, gw, name, mdns.TypeSRV)
		want := strings.TrimPrefix(name, "_8080._tcp.")
		var srv *mdns.SRV
		if err == nil && len(r.Answer) == 1 {
			srv, _ = r.Answer[0].(*mdns.SRV)
		}
		if srv == nil || srv.Port != 8080 || srv.Target != want {
			t.Errorf("SRV %s from probe: %v %v, want port 8080 at %s", name, r, err, want)
		}
	}
	// Connecting by name, to tasks on other hosts (dnsrr service, tasks.*,
	// a task's name), with busybox's own resolver.
	for _, name := range []string{"rr", "tasks.web", victimName} {
		out, errOut, err := cliOut(ctx, c, "exec", "probe", "--", "sh", "-c",
			fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080`, name))
		if err != nil || !strings.Contains(out, `"hostname"`) {
			t.Errorf("GET http://%s:8080/ from probe: %v %q %q", name, err, out, errOut)
		}
	}
	// Another network's container learns nothing of back.
	if r, err := askFrom(outsider, gw, "web."); err == nil && (r.Rcode == mdns.RcodeSuccess || len(r.Answer) > 0) {
		t.Errorf("a container on network other asking back's server for web: %s %v", mdns.RcodeToString[r.Rcode], r.Answer)
	}
	if r, err := askFrom(outsider, nameserver(t, outsider), "web."); err != nil || r.Rcode != mdns.RcodeNameError {
		t.Errorf("a container on network other asking its own server for web: %v %v, want NXDOMAIN", r, err)
	}
	if got := up.asked(); slices.ContainsFunc(got, func(n string) bool { return !strings.HasSuffix(n, "example.") }) {
		t.Errorf("the node's resolver was asked names of ours: %v", got)
	}

	// kill -9 a web task: its address leaves tasks.web, seen from a3.
	killed := time.Now()
	if err := syscall.Kill(int(victim.GetStatus().GetContainer().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatalf("kill the container's process: %v", err)
	}
	gone := waitAnswer(t, probe, gw, "tasks.web.", func(a []string) bool { return !slices.Contains(a, taskAddrOf(victim)) })
	t.Logf("killed task %s left tasks.web on %s %s after kill -9", victim.GetId(), a3, gone.Sub(killed).Round(time.Millisecond))
	back := waitAnswer(t, probe, gw, "tasks.web.", func(a []string) bool { return len(a) == 3 })
	if repl := liveTasks(t, c, "web")[victim.GetSlot()]; repl != nil && repl.GetId() != victim.GetId() {
		t.Logf("replacement %s resolves on %s %s after its agent reported it running", repl.GetId(), a3,
			back.Sub(repl.GetStatus().GetTimestamp().AsTime()).Round(time.Millisecond))
	}

	// The probe's agent restarts (kill -9, then started again): the
	// running probe resolves again as soon as the new agent serves.
	restarted := time.Now()
	if err := c.Restart(ctx, c.Agents[2]); err != nil {
		t.Fatal(err)
	}
	again := waitAnswer(t, probe, gw, "tasks.web.", func(a []string) bool { return len(a) == 3 })
	t.Logf("the probe resolves again %s after its agent was restarted", again.Sub(restarted).Round(time.Millisecond))

	// A task with a health check is answered once healthy, not while it
	// runs unchecked: when its address first resolves, the cluster
	// already knows it healthy.
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "hc", "--network", "back", "--constraint", "node.hostname=="+c.Agents[0].Name,
		"--health-http", "8080/health", "--health-interval", "1s", c.Images.AppV1.Tag); err != nil {
		t.Fatal(err)
	}
	var first []string
	waitAnswer(t, probe, gw, "tasks.hc.", func(a []string) bool { first = slices.Clone(a); return len(a) == 1 })
	hc, err := c.Tasks(ctx, "hc")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range hc {
		if len(tk.GetNetworks()) > 0 && taskAddrOf(tk) == first[0] {
			if h := tk.GetStatus().GetContainer().GetHealth(); h != pb.ContainerStatus_HEALTH_HEALTHY {
				t.Errorf("tasks.hc answered %s while its task's health is %s", first[0], h)
			}
		}
	}
}

// nameserver is the nameserver of the task's container's /etc/resolv.conf.
func nameserver(t testing.TB, tk *pb.Task) netip.Addr {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/etc/resolv.conf", tk.GetStatus().GetContainer().GetPid()))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^nameserver (\S+)$`).FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("no nameserver in the container's resolv.conf:\n%s", b)
	}
	return netip.MustParseAddr(m[1])
}

func taskAddrOf(tk *pb.Task) string {
	return netip.MustParsePrefix(tk.GetNetworks()[0].GetAddresses()[0]).Addr().String()
}

func addrsOfTasks(tasks map[uint64]*pb.Task) []string {
	var out []string
	for _, tk := range tasks {
		out = append(out, taskAddrOf(tk))
	}
	slices.Sort(out)
	return out
}

// nslookup runs busybox's nslookup for name's A records in svc's
// container and returns the addresses it printed, sorted.
func nslookup(t *testing.T, c *e2ecluster.Cluster, svc, name string) []string {
	t.Helper()
	out, errOut, err := cliOut(t.Context(), c, "exec", svc, "--", "nslookup", "-type=a", name)
	if err != nil {
		t.Logf("nslookup %s: %v %q %q", name, err, out, errOut)
		return nil
	}
	_, answers, _ := strings.Cut(out, "Name:")
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^Address: (\S+)$`).FindAllStringSubmatch(answers, -1) {
		got = append(got, m[1])
	}
	slices.Sort(got)
	return got
}

// askFrom sends a query for name from inside tk's container's network
// namespace, as the container would, to server port 53.
func askFrom(tk *pb.Task, server netip.Addr, name string) (*mdns.Msg, error) {
	return askTypeFrom(tk, server, name, mdns.TypeA)
}

// askTypeFrom is askFrom for records of type qtype.
func askTypeFrom(tk *pb.Task, server netip.Addr, name string, qtype uint16) (*mdns.Msg, error) {
	conn, err := inNetns(fmt.Sprintf("/proc/%d/ns/net", tk.GetStatus().GetContainer().GetPid()), func() (net.Conn, error) {
		return net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(server, 53)))
	})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	c := &mdns.Client{Timeout: 2 * time.Second}
	r, _, err := c.ExchangeWithConn(new(mdns.Msg).SetQuestion(name, qtype), &mdns.Conn{Conn: conn})
	return r, err
}

// inNetns runs fn on a thread inside the network namespace at nsPath: a
// socket it opens stays there. The thread goes back to its own namespace
// and to the pool afterwards (threads are cheaper kept than made); only
// when it cannot go back is it left to die. (The cluster's processes no
// longer die with such a thread: testhost forks them from one of its own.)
func inNetns[T any](nsPath string, fn func() (T, error)) (T, error) {
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		defer func() { ch <- r }()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			r.err = err
			return
		}
		defer orig.Close()
		ns, err := netns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			r.err = err
			return
		}
		defer ns.Close()
		if r.err = netns.Set(ns); r.err == nil {
			r.v, r.err = fn()
		}
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
	}()
	r := <-ch
	return r.v, r.err
}

// waitAnswer polls name from tk's container until ok holds for its
// answer's addresses, and returns when it first did.
func waitAnswer(t testing.TB, tk *pb.Task, server netip.Addr, name string, ok func([]string) bool) time.Time {
	t.Helper()
	var last []string
	deadline := time.Now().Add(wait)
	for time.Now().Before(deadline) {
		r, err := askFrom(tk, server, name)
		if err == nil {
			last = last[:0]
			for _, rr := range r.Answer {
				if a, isA := rr.(*mdns.A); isA {
					last = append(last, a.A.String())
				}
			}
			if ok(last) {
				return time.Now()
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s never gave the awaited answer; last %v", name, last)
	return time.Time{}
}

// dnsUpstream is a DNS server in a test host's namespace, standing in for
// the node's resolver: ext.example is 192.0.2.77, every other name
// NXDOMAIN; it records what it was asked.
type dnsUpstream struct {
	addr netip.Addr
	mu   sync.Mutex
	seen []string
}

func (u *dnsUpstream) asked() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.seen)
}

func startUpstream(t *testing.T, h *testhost.Host) *dnsUpstream {
	t.Helper()
	u := &dnsUpstream{addr: h.Addr}
	conn, err := inNetns(h.NetnsPath(), func() (net.PacketConn, error) {
		return net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(h.Addr, 53)))
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: conn, Handler: mdns.HandlerFunc(func(w mdns.ResponseWriter, req *mdns.Msg) {
		u.mu.Lock()
		u.seen = append(u.seen, req.Question[0].Name)
		u.mu.Unlock()
		r := new(mdns.Msg).SetReply(req)
		if req.Question[0].Name == "ext.example." && req.Question[0].Qtype == mdns.TypeA {
			r.Answer = append(r.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: "ext.example.", Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 60},
				A: net.IPv4(192, 0, 2, 77)})
		} else if req.Question[0].Name != "ext.example." {
			r.Rcode = mdns.RcodeNameError
		}
		w.WriteMsg(r)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.ActivateAndServe()
	}()
	t.Cleanup(func() {
		srv.Shutdown()
		<-done
	})
	return u
}
