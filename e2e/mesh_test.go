package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netns"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/overlay/dataplane"
	pb "berth/proto/berth/v1"
)

// TestVIPAndRoutingMesh, on three agents, web running on a1 and a2 only:
// port 8080 answers on every node, a3 (no task) included, reaching both
// replicas, and on each node's 127.0.0.1; a node with a task answers from it and the task sees the
// client's own address; the VIP, from a container on a3, reaches both
// replicas; a killed task leaves the VIP within seconds; a host-mode port
// answers only where its task runs; a clashing port is refused naming
// the service that has it; `-p 0:8080` gets a node port that answers
// everywhere; an agent restart keeps its task reachable and sweeps a
// stale chain of ours; removing everything leaves no table or link.
func TestVIPAndRoutingMesh(t *testing.T) {
	c := up(t, 1, 3, nil)
	ctx := t.Context()
	a1, a2, a3 := c.Agents[0], c.Agents[1], c.Agents[2]
	cli := func(args ...string) string {
		t.Helper()
		out, err := c.CLI(ctx, args...)
		if err != nil {
			t.Fatalf("berth %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	cli("service", "create", "--detach", "--name", "web", "--mode", "global", "--constraint", "node.hostname!="+a3.Name,
		"--publish", "8080:8080", c.Images.AppV1.Tag)
	runningOn(t, c, "web", 2)

	// Every node answers; a node with a task answers from it, keeping the
	// client's address; a3 forwards to both, as itself.
	outside := c.Hosts.Gateway.String() // the test process, outside the cluster
	names := map[string]string{}
	for _, a := range []*e2ecluster.Node{a1, a2} {
		names[a.Name] = taskOn(t, c, "web", a).GetId()[:12] // the task's hostname
		// Until a's agent learns its task is ready it forwards to the other.
		await.True(t, wait, func() bool {
			ans, err := getApp(ctx, a.Host.Addr, 8080)
			return err == nil && ans.Hostname == names[a.Name]
		},
			"GET %s:8080 answers from its own task %s", a.Name, names[a.Name])
		for range 10 {
			ans, err := getApp(ctx, a.Host.Addr, 8080)
			if err != nil || ans.Hostname != names[a.Name] || ans.from() != outside {
				t.Fatalf("GET %s:8080 = %+v, %v; want its own task (%s), seeing the client %s", a.Name, ans, err, names[a.Name], outside)
			}
		}
	}
	if names[a1.Name] == names[a2.Name] {
		t.Fatalf("a1 and a2 answered from one task %s", names[a1.Name])
	}
	seen := map[string]bool{}
	for range 40 {
		ans, err := getApp(ctx, a3.Host.Addr, 8080)
		if err != nil || ans.from() != a3.Host.Addr.String() {
			t.Fatalf("GET a3:8080 (no task there) = %+v, %v; want a task, seeing a3 %s", ans, err, a3.Host.Addr)
		}
		seen[ans.Hostname] = true
	}
	if !seen[names[a1.Name]] || !seen[names[a2.Name]] {
		t.Errorf("40 GETs to a3:8080 reached %v; want both replicas %v", seen, names)
	}
	// On each node's own 127.0.0.1 too: a1 from its task, a3 (none
	// there) through the loopback hop to either replica.
	for _, a := range []*e2ecluster.Node{a1, a3} {
		for range 5 {
			ans, err := getLoopbackApp(a.Host.NetnsPath(), 8080)
			if err != nil || (ans.Hostname != names[a1.Name] && ans.Hostname != names[a2.Name]) || a == a1 && ans.Hostname != names[a1.Name] {
				t.Fatalf("GET 127.0.0.1:8080 on %s = %+v, %v; want a replica (a1's own on a1)", a.Name, ans, err)
			}
		}
	}

	// The VIP, from a container on a3, reaches both replicas.
	vip := serviceVIP(t, c, "web")
	client3 := fmt.Sprintf(`for i in $(seq 40); do printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080; echo; done |
		grep -o '"hostname":"[^"]*"' | sort -u > /tmp/seen; cat /tmp/seen; [ $(wc -l < /tmp/seen) -eq 2 ]`, vip)
	client(t, c, "vipclient", "default", a3.Name, client3)
	if st := finalState(t, c, "vipclient"); st != pb.TaskState_TASK_STATE_COMPLETE {
		dumpContainerLogs(t, a3)
		t.Fatalf("a container on a3 did not reach both replicas through the VIP %s: %s", vip, st)
	}

	// A killed task leaves the VIP of a container on a3.
	client(t, c, "watcher", "default", a3.Name, "sleep 3600")
	runningOn(t, c, "watcher", 1)
	watcher := containerPid(t, c, "watcher")
	victim, other := taskOn(t, c, "web", a2), taskOn(t, c, "web", a1)
	victimAddr, otherAddr := firstAddr(victim), firstAddr(other)
	var backends []string
	await.True(t, wait, func() bool {
		backends = vipBackends(t, watcher)
		return slices.Contains(backends, victimAddr) && slices.Contains(backends, otherAddr)
	}, "the watcher's VIPs %v have both replicas %s and %s", &backends, victimAddr, otherAddr)
	killed := time.Now()
	if err := syscall.Kill(int(victim.GetStatus().GetContainer().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	await.True(t, 5*time.Second, func() bool { return !slices.Contains(vipBackends(t, watcher), victimAddr) },
		"the killed task %s leaves the VIP", victimAddr)
	t.Logf("killed task out of a3's VIP map %s after the kill", time.Since(killed).Round(time.Millisecond))

	// Host mode: only where the task runs.
	cli("service", "create", "--detach", "--name", "hm", "--constraint", "node.hostname=="+a1.Name,
		"--publish", "mode=host,published=8081,target=8080", c.Images.AppV1.Tag)
	runningOn(t, c, "hm", 1)
	await.NoError(t, wait, func() error { _, err := getApp(ctx, a1.Host.Addr, 8081); return err }, "GET a1:8081 (host mode)")
	for _, a := range []*e2ecluster.Node{a2, a3} {
		if ans, err := getApp(ctx, a.Host.Addr, 8081); err == nil {
			t.Errorf("GET %s:8081 (host mode, task on a1) answered %+v", a.Name, ans)
		}
	}

	// A second task of hm could only go where a1's port is taken: it
	// waits, saying why (as Swarm's scheduler does).
	cli("service", "scale", "--detach", "hm=2")
	const taken = "host port 8081/tcp already in use on every eligible node"
	await.True(t, wait, func() bool {
		tasks, err := c.Tasks(ctx, "hm")
		for _, tk := range tasks {
			if err == nil && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_PENDING && strings.Contains(tk.GetStatus().GetErr(), taken) {
				return true
			}
		}
		return false
	}, "hm's second task pending with %q", taken)
	cli("service", "scale", "--detach", "hm=1")

	// A clash is refused, naming the service that has the port.
	for _, args := range [][]string{
		{"service", "create", "--detach", "--name", "clash", "--publish", "8080:80", c.Images.AppV1.Tag},
		{"service", "update", "--publish-add", "8080:9000", "hm"},
	} {
		if out, err := c.CLI(ctx, args...); err == nil || !strings.Contains(out+err.Error(), `already published by service "web"`) {
			t.Errorf("berth %s: %v\n%s\nwant refused naming web", strings.Join(args, " "), err, out)
		}
	}

	// -p 0:8080 gets a node port, shown, answering on every node.
	cli("service", "create", "--detach", "--name", "anyport", "--constraint", "node.hostname=="+a1.Name, "--publish", "0:8080", c.Images.AppV1.Tag)
	runningOn(t, c, "anyport", 1)
	svc, err := c.Service(ctx, "anyport")
	if err != nil {
		t.Fatal(err)
	}
	port := svc.GetEndpoint().GetPorts()[0].GetPublishedPort()
	if port < 30000 || port > 32767 {
		t.Fatalf("-p 0:8080 was given port %d; want one of 30000-32767", port)
	}
	if ls := cli("service", "ls"); !strings.Contains(ls, fmt.Sprintf("*:%d->8080/tcp", port)) {
		t.Errorf("service ls does not show the port given:\n%s", ls)
	}
	await.NoError(t, wait, func() error { _, err := getApp(ctx, a3.Host.Addr, uint16(port)); return err }, "GET a3:%d", port)

	// a1's agent dies: its task stays reachable through the kernel's
	// rules; a stale chain of ours planted meanwhile is swept by the next
	// agent, which keeps the task reachable.
	if err := c.Kill9(a1); err != nil {
		t.Fatal(err)
	}
	if ans, err := getApp(ctx, a1.Host.Addr, 8080); err != nil || ans.Hostname != names[a1.Name] {
		t.Errorf("GET a1:8080 while its agent is down = %+v, %v; want its task %s", ans, err, names[a1.Name])
	}
	addStaleChain(t, a1.Host.NetnsPath())
	if err := c.Restart(ctx, a1); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool { return !slices.Contains(ourChains(t, a1.Host.NetnsPath()), "stale") }, "a1's restarted agent sweeps the stale chain")
	for _, a := range []*e2ecluster.Node{a1, a3} {
		await.NoError(t, wait, func() error { _, err := getApp(ctx, a.Host.Addr, 8080); return err }, "GET %s:8080 after a1's agent restarted", a.Name)
	}

	for _, s := range []string{"web", "hm", "anyport", "vipclient", "watcher"} {
		cli("service", "rm", s)
	}
	for _, a := range c.Agents {
		await.True(t, wait, func() bool { return len(overlayLeft(t, a.Host.NetnsPath())) == 0 },
			"host %s keeps overlay links or nftables tables after its services were removed", a.Name)
	}
}

// appAnswer is what the test app says at /.
type appAnswer struct {
	Hostname   string `json:"hostname"`
	RemoteAddr string `json:"remote_addr"`
}

// from is the address the app saw the request come from.
func (a appAnswer) from() string {
	host, _, _ := net.SplitHostPort(a.RemoteAddr)
	return host
}

// getApp asks the app at addr:port, on a new connection.
func getApp(ctx context.Context, addr netip.Addr, port uint16) (appAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/", netip.AddrPortFrom(addr, port))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return appAnswer{}, err
	}
	hc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Do(req)
	if err != nil {
		return appAnswer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return appAnswer{}, err
	}
	var ans appAnswer
	if err := json.Unmarshal(b, &ans); err != nil {
		return appAnswer{}, fmt.Errorf("GET %s: %w: %q", url, err, b)
	}
	return ans, nil
}

// getLoopbackApp asks the app at 127.0.0.1:port in the namespace at
// nsPath, on a new connection (by hand: net/http dials on a goroutine of
// its own, outside the namespace).
func getLoopbackApp(nsPath string, port uint16) (appAnswer, error) {
	conn, err := inNetns(nsPath, func() (net.Conn, error) {
		return net.DialTimeout("tcp", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String(), 3*time.Second)
	})
	if err != nil {
		return appAnswer{}, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return appAnswer{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return appAnswer{}, err
	}
	defer resp.Body.Close()
	var ans appAnswer
	return ans, json.NewDecoder(resp.Body).Decode(&ans)
}

// serviceVIP is svc's virtual IP on its first network.
func serviceVIP(t *testing.T, c *e2ecluster.Cluster, svc string) string {
	t.Helper()
	s, err := c.Service(t.Context(), svc)
	if err != nil {
		t.Fatal(err)
	}
	vips := s.GetEndpoint().GetVirtualIps()
	if len(vips) == 0 {
		t.Fatalf("%s has no VIP", svc)
	}
	return netip.MustParsePrefix(vips[0].GetAddr()).Addr().String()
}

// taskOn is svc's running task on agent a.
func taskOn(t *testing.T, c *e2ecluster.Cluster, svc string, a *e2ecluster.Node) *pb.Task {
	t.Helper()
	n, err := c.NodeByName(t.Context(), a.Name)
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := c.Tasks(t.Context(), svc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.GetNodeId() == n.ID && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			return tk
		}
	}
	t.Fatalf("%s has no running task on %s", svc, a.Name)
	return nil
}

func firstAddr(t *pb.Task) string {
	return netip.MustParsePrefix(t.GetNetworks()[0].GetAddresses()[0]).Addr().String()
}

// containerPid is the host PID of the init of svc's running task.
func containerPid(t testing.TB, c *e2ecluster.Cluster, svc string) int {
	t.Helper()
	tasks, err := c.Tasks(t.Context(), svc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if pid := tk.GetStatus().GetContainer().GetPid(); pid != 0 && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			return int(pid)
		}
	}
	t.Fatalf("%s has no running container", svc)
	return 0
}

// vipBackends lists the backend addresses of the VIP maps in the
// container with init pid.
func vipBackends(t testing.TB, pid int) []string {
	t.Helper()
	conn := nftIn(t, fmt.Sprintf("/proc/%d/ns/net", pid))
	defer conn.CloseLasting()
	sets, err := conn.GetSets(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: dataplane.DefaultPrefix})
	if err != nil {
		return nil // no table: no VIP
	}
	var out []string
	for _, s := range sets {
		elems, err := conn.GetSetElements(s)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range elems {
			if a, ok := netip.AddrFromSlice(e.Val); ok {
				out = append(out, a.String())
			}
		}
	}
	return out
}

// addStaleChain plants a chain named "stale" in the host's table of ours,
// as an older agent might have left.
func addStaleChain(t *testing.T, nsPath string) {
	t.Helper()
	conn := nftIn(t, nsPath)
	defer conn.CloseLasting()
	tb := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: dataplane.DefaultPrefix})
	conn.AddChain(&nftables.Chain{Name: "stale", Table: tb})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
}

// ourChains lists the chains of the host's table of ours.
func ourChains(t *testing.T, nsPath string) []string {
	t.Helper()
	conn := nftIn(t, nsPath)
	defer conn.CloseLasting()
	chains, err := conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, ch := range chains {
		if ch.Table.Name == dataplane.DefaultPrefix {
			out = append(out, ch.Name)
		}
	}
	return out
}

func nftIn(t testing.TB, nsPath string) *nftables.Conn {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// Lasting: the socket is made now, while the namespace's fd is open.
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	return conn
}
