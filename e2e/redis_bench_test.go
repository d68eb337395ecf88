package e2e

import (
	"encoding/csv"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/testhost"
	"berth/internal/testimage"
)

// BenchmarkRedisPublished: redis-benchmark GET against Debian's
// redis-server run as a berth service, through its published port, next
// to the same redis-server run on the agent's host, both reached from a
// host outside the cluster; with kept connections (-k 1) and with a new
// connection per request (-k 0). Aim: 0.8 of the host's both ways (the
// userland proxy this replaces reached 0.37 and 0.23). Two more servers
// run beside them:
//   - the same service without its seccomp filter, so that the filter's
//     cost shows apart from the path's;
//   - dnat-by-hand: the published path built by hand with ip and nft on a
//     host where berth runs nothing, redis-server in a network namespace
//     of its own behind a veth on a bridge, its port published by one
//     DNAT rule. It is the kernel's own cost of a published port: berth
//     over it near 1 means nothing of berth's sits in the way, and it
//     over the host's redis is what the veth hop and the NAT cost.
//
// Made fair: every server (all its threads) runs on CPU 1 and the client
// on CPU 0, the redis-servers outside containers in cgroups beside the
// containers', and the four are measured in redisRounds rounds in a
// rotating order. Each figure is a median; each ratio the median of its
// rounds' ratios, with the lowest and highest round for berth's. On a
// busy machine rounds a second apart differ by more than what is
// measured, so each round also runs the four at the same time
// (together-…): whatever else runs then slows them alike, and the
// clients split CPU 0 and the servers CPU 1, so the ratios are those of
// what a request costs on each path.
func BenchmarkRedisPublished(b *testing.B) {
	for _, tool := range []string{"redis-server", "redis-benchmark", "nft", "ip", "unshare"} {
		if _, err := exec.LookPath(tool); err != nil {
			b.Skipf("needs %s (make bench installs it)", tool)
		}
	}
	c := benchUpWith(b, e2ecluster.Options{Managers: 1, Agents: 1, SpareHosts: 2})
	ctx := b.Context()
	a1 := c.Agents[0]
	client, yard := c.Hosts.Hosts[2], c.Hosts.Hosts[3]
	img, err := testimage.FromHostBinary("/usr/bin/redis-server")
	if err != nil {
		b.Fatal(err)
	}
	ref, _, err := c.Images.Registry.Push(ctx, "redis:bench", img)
	if err != nil {
		b.Fatal(err)
	}
	// The same service without seccomp too: the filter's cost shows apart.
	for _, svc := range []struct{ name, port, seccomp string }{{"redis", "6379", "default"}, {"redis-nosec", "6381", "unconfined"}} {
		args := append([]string{"service", "create", "--name", svc.name, "--security-opt", "seccomp=" + svc.seccomp,
			"--publish", svc.port + ":6379", ref, "/usr/bin/redis-server"}, redisArgs("6379")...)
		if svc.seccomp == "default" {
			args = slices.Delete(args, 4, 6)
		}
		if out, err := c.CLI(ctx, args...); err != nil {
			b.Fatalf("%v\n%s", err, out)
		}
	}
	native, err := a1.Host.Start(a1.Host.Command(ctx, "redis-server", redisArgs("6380")...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { a1.Host.Kill9(native) })
	byHand := dnatByHand(b, yard, "6382")
	ctr := containerPid(b, c, "redis")
	sameCPUShare(b, native.PID(), ctr, "host")
	sameCPUShare(b, byHand, ctr, "dnat")
	widenPorts(b, client)
	node := a1.Host.Addr.String()
	servers := []redisServer{
		{"berth", [2]string{node, "6379"}}, {"host", [2]string{node, "6380"}},
		{"berth-no-seccomp", [2]string{node, "6381"}}, {"dnat-by-hand", [2]string{yard.Addr.String(), "6382"}},
	}
	for _, s := range servers {
		await.NoError(b, wait, func() error { return dialable(s.addr) }, "redis on %s:%s", s.addr[0], s.addr[1])
	}
	for _, pid := range []int{ctr, containerPid(b, c, "redis-nosec"), native.PID(), byHand} {
		pinTree(b, pid, serverCPU)
	}
	b.Logf(noise)
	for b.Loop() {
		for _, k := range []struct{ name, keep, n string }{{"keepalive", "1", "10000"}, {"conn-per-req", "0", "3000"}} {
			reportRedis(b, k.name, servers, measureRedis(b, client, servers, k.keep, k.n))
		}
	}
	b.ReportMetric(loadAvg(b), "load-avg")
}

// redisServer is a redis-server the benchmark measures, at addr (host
// and port).
type redisServer struct {
	name string
	addr [2]string
}

// redisRuns are one kind of connection's results: each server's GET/s
// and p50 by round, and each ratio by round.
type redisRuns struct {
	rps, p50 [][]float64
	ratios   map[string][]float64
}

// measureRedis runs redisRounds rounds of redis-benchmark: the servers
// one at a time in a rotating order, and all at the same time.
func measureRedis(b *testing.B, client *testhost.Host, servers []redisServer, keep, n string) redisRuns {
	runs := redisRuns{rps: make([][]float64, len(servers)), p50: make([][]float64, len(servers)), ratios: map[string][]float64{}}
	var addrs [][2]string
	for _, s := range servers {
		addrs = append(addrs, s.addr)
	}
	for r := range redisRounds {
		round := make([]redisResult, len(servers))
		for i := range len(servers) + 1 {
			j := (i + r) % (len(servers) + 1)
			if j == len(servers) {
				got := redisTogether(b, client, addrs, keep, n)
				for _, q := range redisRatios {
					runs.ratios["together-"+q.name] = append(runs.ratios["together-"+q.name], got[q.num].rps/got[q.den].rps)
				}
				continue
			}
			res, err := redisBench(b, client, servers[j].addr, keep, n)
			if err != nil {
				b.Fatal(err)
			}
			round[j] = res
			runs.rps[j], runs.p50[j] = append(runs.rps[j], res.rps), append(runs.p50[j], res.p50)
		}
		for _, q := range redisRatios {
			runs.ratios[q.name] = append(runs.ratios[q.name], round[q.num].rps/round[q.den].rps)
		}
	}
	return runs
}

// reportRedis reports one kind of connection's medians, berth's and the
// host's p50, and the spread of berth over the host.
func reportRedis(b *testing.B, kind string, servers []redisServer, runs redisRuns) {
	for i, s := range servers {
		b.ReportMetric(median(runs.rps[i]), kind+"-"+s.name+"-GET/s")
	}
	for _, q := range redisRatios {
		b.ReportMetric(median(runs.ratios[q.name]), kind+"-"+q.name)
		b.ReportMetric(median(runs.ratios["together-"+q.name]), kind+"-together-"+q.name)
	}
	for _, q := range []string{"berth/host", "together-berth/host", "together-no-seccomp/host"} {
		b.ReportMetric(slices.Min(runs.ratios[q]), kind+"-"+q+"-min")
		b.ReportMetric(slices.Max(runs.ratios[q]), kind+"-"+q+"-max")
	}
	b.ReportMetric(median(runs.p50[0]), kind+"-berth-p50-ms")
	b.ReportMetric(median(runs.p50[1]), kind+"-host-p50-ms")
	b.Logf("%s GET/s, each server's rounds (berth, host, berth without seccomp, DNAT by hand): %.0f", kind, runs.rps)
	b.Logf("%s berth/host by round: %.3f; at the same time: %.3f (without seccomp %.3f)", kind,
		runs.ratios["berth/host"], runs.ratios["together-berth/host"], runs.ratios["together-no-seccomp/host"])
}

// redisRatios are the ratios BenchmarkRedisPublished reports, as indexes
// into its servers.
var redisRatios = []struct {
	name     string
	num, den int
}{
	{"berth/host", 0, 1}, {"no-seccomp/host", 2, 1},
	{"berth/dnat-by-hand", 0, 3}, {"no-seccomp/dnat-by-hand", 2, 3}, {"dnat-by-hand/host", 3, 1},
}

// redisRounds is how many times each redis-server is measured per kind
// of connection.
const redisRounds = 7

// The CPUs the redis benchmark pins its servers and its client to.
const (
	serverCPU = 1
	clientCPU = 0
)

// redisArgs are redis-server's flags for a server on port: every
// address, no persistence.
func redisArgs(port string) []string {
	return []string{"--port", port, "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"}
}

// benchUpWith is benchUp with every option.
func benchUpWith(b *testing.B, opts e2ecluster.Options) *e2ecluster.Cluster {
	b.Helper()
	opts.Dir, opts.Bins = b.TempDir(), bins
	c, err := e2ecluster.Up(b.Context(), opts)
	if err != nil {
		logTails(b, opts.Dir)
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if b.Failed() {
			logTails(b, opts.Dir)
		}
		if err := c.Close(); err != nil {
			b.Errorf("tear down: %v", err)
		}
	})
	return c
}

// The hand-built published path's addresses: its bridge's, on the host,
// and the server's, in its namespace.
const (
	handGateway = "192.168.250.1"
	handServer  = "192.168.250.2"
)

// dnatByHand builds a published port by hand on host h, as an operator
// would with ip and nft: redis-server in a network namespace of its own,
// behind a veth on a bridge (berth's devices, at berth's overlay MTU),
// and one DNAT rule sending h's port to it. It returns the server's PID.
func dnatByHand(b *testing.B, h *testhost.Host, port string) int {
	b.Helper()
	ctx := b.Context()
	// nsenter execs unshare, which execs redis-server: one PID.
	srv, err := h.Start(h.Command(ctx, "unshare", append([]string{"--net", "--", "redis-server"}, redisArgs("6379")...)...))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Kill9(srv) })
	pid := srv.PID()
	await.True(b, wait, func() bool {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		return string(comm) == "redis-server\n"
	}, "redis-server in a namespace of its own on %s", h.Name)
	mtu := strconv.Itoa(overlayMTU(b, h))
	ns := fmt.Sprintf("/proc/%d/ns/net", pid)
	run := func(cmd *exec.Cmd) {
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("%v: %v\n%s", cmd.Args, err, out)
		}
	}
	for _, args := range [][]string{
		{"link", "add", "hbr0", "mtu", mtu, "type", "bridge"},
		{"addr", "add", handGateway + "/24", "dev", "hbr0"},
		{"link", "add", "hve0", "mtu", mtu, "master", "hbr0", "type", "veth", "peer", "name", "eth0", "mtu", mtu, "netns", strconv.Itoa(pid)},
		{"link", "set", "hve0", "up"},
		{"link", "set", "hbr0", "up"},
	} {
		run(h.Command(ctx, "ip", args...))
	}
	for _, args := range [][]string{
		{"addr", "add", handServer + "/24", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"link", "set", "lo", "up"},
		{"route", "add", "default", "via", handGateway},
	} {
		run(exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns, "ip"}, args...)...))
	}
	rules := fmt.Sprintf(`table ip dnat-by-hand {
	chain prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		tcp dport %s dnat to %s:6379
	}
}
`, port, handServer)
	nft := h.Command(ctx, "nft", "-f", "-")
	nft.Stdin = strings.NewReader(rules)
	run(nft)
	run(h.Command(ctx, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"))
	return pid
}

// overlayMTU is the MTU berth gives overlay links on host h: its
// underlay's less VXLAN's 50 bytes.
func overlayMTU(b *testing.B, h *testhost.Host) int {
	out, err := h.Command(b.Context(), "cat", "/sys/class/net/eth0/mtu").Output()
	if err != nil {
		b.Fatal(err)
	}
	mtu, err := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil {
		b.Fatal(err)
	}
	return mtu - 50
}

// widenPorts gives the client host every port above 1023 for its
// connections, and lets it reuse a port in TIME_WAIT for a new one (as a
// client making many connections is set up). Each connection the client
// closes leaves its port in TIME_WAIT for a minute, and the kernel hands
// connect() the even half of the range first: the 14 runs of 3000
// connections to berth's server and the host's would run the default
// range's 14k even ports dry, and the last rounds crawl at a few hundred
// requests a second while connect() searches for a free port.
func widenPorts(b *testing.B, h *testhost.Host) {
	cmd := h.Command(b.Context(), "sh", "-c",
		"echo 1024 65535 > /proc/sys/net/ipv4/ip_local_port_range && echo 1 > /proc/sys/net/ipv4/tcp_tw_reuse")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("widen the client's ports: %v\n%s", err, out)
	}
}

// pinTree pins every thread of pid and of its descendants to cpu (the
// container's init and its redis-server; on one CPU, nothing to pin).
func pinTree(b *testing.B, pid, cpu int) {
	if runtime.NumCPU() <= max(serverCPU, clientCPU) {
		return
	}
	var set unix.CPUSet
	set.Set(cpu)
	tids, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		b.Fatalf("threads of pid %d: %v", pid, err)
	}
	for _, t := range tids {
		tid, _ := strconv.Atoi(t.Name())
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			b.Fatalf("pin thread %d of pid %d to CPU %d: %v", tid, pid, cpu, err)
		}
		kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, tid))
		for _, k := range strings.Fields(string(kids)) {
			child, _ := strconv.Atoi(k)
			pinTree(b, child, cpu)
		}
	}
}

type redisResult struct{ rps, p50 float64 }

// redisTogether runs redisBench against every one of addrs at the same
// time, every client on the client CPU.
func redisTogether(b *testing.B, client *testhost.Host, addrs [][2]string, keep, n string) []redisResult {
	b.Helper()
	got := make([]redisResult, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() { got[i], errs[i] = redisBench(b, client, a, keep, n) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return got
}

// redisBench runs redis-benchmark's GET test from host client against
// addr (host and port).
func redisBench(b *testing.B, client *testhost.Host, addr [2]string, keep, n string) (redisResult, error) {
	b.Helper()
	host, port := addr[0], addr[1]
	args := []string{"redis-benchmark", "-h", host, "-p", port, "-t", "get", "-n", n, "-k", keep, "--csv"}
	if runtime.NumCPU() > max(serverCPU, clientCPU) {
		args = append([]string{"taskset", "-c", strconv.Itoa(clientCPU)}, args...)
	}
	out, err := client.Command(b.Context(), args[0], args[1:]...).Output()
	if err != nil {
		return redisResult{}, fmt.Errorf("redis-benchmark -h %s -p %s -k %s: %w\n%s", host, port, keep, err, out)
	}
	recs, err := csv.NewReader(strings.NewReader(string(out))).ReadAll()
	if err != nil || len(recs) < 2 {
		return redisResult{}, fmt.Errorf("redis-benchmark output %q: %v", out, err)
	}
	col := map[string]int{}
	for i, h := range recs[0] {
		col[h] = i
	}
	rps, err1 := strconv.ParseFloat(recs[1][col["rps"]], 64)
	p50, err2 := strconv.ParseFloat(recs[1][col["p50_latency_ms"]], 64)
	if err1 != nil || err2 != nil {
		return redisResult{}, fmt.Errorf("redis-benchmark output %q", out)
	}
	return redisResult{rps, p50}, nil
}

// sameCPUShare moves pid into a new CPU cgroup beside the container
// whose process is ctr (/berth/bench-NAME-PID next to /berth/TASK): both
// then compete under the same parent, whose share every container of the
// machine's other berth clusters splits too. A process left in the root,
// or in a group of its own at the top, would get more CPU than the
// container it is measured against on a busy machine.
func sameCPUShare(b *testing.B, pid, ctr int, name string) {
	root := "/sys/fs/cgroup/cpu" // v1
	if _, err := os.Stat(root); err != nil {
		root = "/sys/fs/cgroup" // v2
	}
	dir := filepath.Join(root, filepath.Dir(cpuCgroup(b, ctr)), fmt.Sprintf("bench-%s-%d", name, os.Getpid()))
	if err := os.Mkdir(dir, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		// Out of the group first, if it still runs (its kill is a cleanup
		// registered earlier, so it runs later).
		os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		await.NoError(b, 5*time.Second, func() error { return os.Remove(dir) }, "remove cgroup %s", dir)
	})
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
		b.Fatal(err)
	}
}

// cpuCgroup is pid's cgroup of the cpu controller (v1), or its cgroup (v2).
func cpuCgroup(b *testing.B, pid int) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && (parts[1] == "" || slices.Contains(strings.Split(parts[1], ","), "cpu")) {
			return parts[2]
		}
	}
	b.Fatalf("no cpu cgroup in /proc/%d/cgroup:\n%s", pid, raw)
	return ""
}

// dialable is nil once addr (host and port) takes connections.
func dialable(addr [2]string) error {
	conn, err := net.DialTimeout("tcp", net.JoinHostPort(addr[0], addr[1]), time.Second)
	if err == nil {
		conn.Close()
	}
	return err
}
