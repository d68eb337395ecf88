package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/internal/testhost"
)

// The data-path benchmarks put berth's figure next to its yardstick in the
// same run, on test hosts (network namespaces on a bridge):
//   - TCP throughput, one iperf3 stream at a time, container to container
//     across two hosts over berth's overlay, next to the same kernel
//     devices put together by hand with `ip link` on two other hosts;
//   - connections per second from a container to a task on the other
//     host, straight to the task and through the service's VIP, with the
//     SYNs the client had to retransmit (each a stalled second).

// throughputRounds is how many times each path is measured. The order
// of the paths rotates every round, so load from elsewhere on the machine
// falls on every path alike; berth's overlay and the hand-built bridged
// path are measured back to back (their order alternating), so that each
// round's ratio of the two compares moments a second apart.
const throughputRounds = 7

// BenchmarkTCPThroughput reports the median Gbit/s of four paths:
//   - berth-overlay: container to container through berth's veths,
//     bridges and VXLAN devices, its nftables table in place (hosts 1, 2);
//   - bridged-by-hand: the same devices (veth, bridge, VXLAN, same MTU)
//     made with `ip link` in hosts where berth built nothing (hosts 3, 4):
//     the fair yardstick, the kernel's own cost of that path;
//   - vxlan-by-hand: a bare VXLAN pair between hosts 3 and 4, no bridge,
//     no veth, no container namespace;
//   - underlay: host 3 to host 4 with no tunnel.
//
// and berth's overlay over the bridged path built by hand (aim: 0.95 or
// more) three ways, from the noisiest to the steadiest on a shared
// machine:
//   - medians-berth/bridged: the median of berth's rounds over the median
//     of the yardstick's;
//   - berth/bridged-by-hand: the median of each round's ratio, the two
//     measured back to back, with its -min and -max over the rounds;
//   - together-berth/bridged: the median (with -min and -max) of the ratio
//     of two streams run at the same time, one on each path, pinned to
//     the same CPUs: whatever else the machine does then falls on both
//     alike, and each gets the same CPU time, so their ratio is that of
//     the work each path costs a byte.
//
// Every iperf3 is pinned alike (client on CPU 0, server on CPU 1), and the
// load average is reported, since other work on a shared machine moves
// the figures.
func BenchmarkTCPThroughput(b *testing.B) {
	needTool(b, "iperf3")
	cl := testhost.NewT(b, 4)
	h1, h2, h3, h4 := cl.Hosts[0], cl.Hosts[1], cl.Hosts[2], cl.Hosts[3]
	p1, _ := planeIn(b, h1)
	p2, _ := planeIn(b, h2)
	for _, p := range []*Plane{p1, p2} {
		mustDo(b, p.SetNetwork(netA))
	}
	c1, c2 := newContainer(b), newContainer(b)
	e1, e2 := ep("t1", netA, "10.77.0.2"), ep("t2", netA, "10.77.0.3")
	mustDo(b, p1.Attach(c1.ns(), e1))
	mustDo(b, p2.Attach(c2.ns(), e2))
	mustDo(b, p1.SetPeer(Peer{NetworkID: netA.ID, Addr: e2.Addr.Addr(), Node: h2.Addr}))
	mustDo(b, p2.SetPeer(Peer{NetworkID: netA.ID, Addr: e1.Addr.Addr(), Node: h1.Addr}))
	d1, d2 := newContainer(b), newContainer(b)
	handBuilt(b, p1.mtu, [2]*testhost.Host{h3, h4}, [2]container{d1, d2})

	paths := []tcpPath{
		{name: "berth-overlay", client: c1.ns(), server: c2.ns(), addr: e2.Addr.Addr().String()},
		{name: "bridged-by-hand", client: d1.ns(), server: d2.ns(), addr: "192.168.243.2"},
		{name: "vxlan-by-hand", client: h3.NetnsPath(), server: h4.NetnsPath(), addr: "192.168.242.2"},
		{name: "underlay", client: h3.NetnsPath(), server: h4.NetnsPath(), addr: h4.Addr.String()},
	}
	loadBefore := loadAvg(b)
	gbits := make([][]float64, len(paths))
	var paired, vsVXLAN, together []float64
	for b.Loop() {
		for r := range throughputRounds {
			round, both := throughputRound(b, paths, r)
			for k := range paths {
				gbits[k] = append(gbits[k], round[k])
			}
			paired = append(paired, round[0]/round[1])
			vsVXLAN = append(vsVXLAN, round[0]/round[2])
			together = append(together, both)
		}
	}
	for i, p := range paths {
		b.ReportMetric(median(gbits[i]), p.name+"-Gbit/s")
	}
	b.ReportMetric(median(gbits[0])/median(gbits[1]), "medians-berth/bridged")
	for _, f := range []struct {
		name   string
		ratios []float64
	}{{"berth/bridged-by-hand", paired}, {"together-berth/bridged", together}} {
		b.ReportMetric(median(f.ratios), f.name)
		b.ReportMetric(slices.Min(f.ratios), f.name+"-min")
		b.ReportMetric(slices.Max(f.ratios), f.name+"-max")
	}
	b.ReportMetric(median(vsVXLAN), "berth/vxlan-by-hand")
	b.ReportMetric((loadBefore+loadAvg(b))/2, "load-avg")
	b.Logf("Gbit/s by round (berth, bridged, vxlan, underlay): %.1f", gbits)
	b.Logf("berth/bridged by round, back to back: %.3f; at the same time: %.3f", paired, together)
}

// throughputRound measures round r: the Gbit/s of each of paths (berth's,
// the bridged one by hand, the VXLAN pair, the underlay), and berth's over
// the bridged one's with both streams at once. Four steps in an order
// rotating with r: berth's path and the bridged one back to back (which
// first alternates), the VXLAN pair, the underlay, and the two at once.
func throughputRound(b *testing.B, paths []tcpPath, r int) (gbits []float64, together float64) {
	gbits = make([]float64, len(paths))
	for s := range 4 {
		switch step := (s + r) % 4; step {
		case 0:
			pair := []int{0, 1}
			if r%2 == 1 {
				pair = []int{1, 0}
			}
			for _, k := range pair {
				gbits[k] = iperf(b, paths[k])
			}
		case 1, 2:
			gbits[step+1] = iperf(b, paths[step+1])
		case 3:
			g := iperfTogether(b, paths[0], paths[1])
			together = g[0] / g[1]
		}
	}
	return gbits, together
}

// tcpPath is one path iperf3 measures: from the namespace at client to a
// server in the namespace at server, reached as addr.
type tcpPath struct{ name, client, server, addr string }

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

// loadAvg is the machine's one-minute load average.
func loadAvg(b *testing.B) float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	var l float64
	if _, err := fmt.Sscan(string(raw), &l); err != nil {
		b.Fatalf("/proc/loadavg %q: %v", raw, err)
	}
	return l
}

// handBuilt makes two yardsticks between hosts[0] and hosts[1] with `ip
// link`, as an operator would by hand, in hosts where berth built nothing:
//   - a VXLAN pair, VNI 4242 on port 4790, 192.168.242.1 and .2/24 on the
//     devices themselves;
//   - berth's path, by hand: in each host a bridge with a VXLAN device
//     (VNI 4243, port 4791) and a veth to the container namespace, whose
//     end holds 192.168.243.1 or .2/24.
//
// Every device has berth's overlay MTU (mtu), so the paths carry the
// same segments.
func handBuilt(b *testing.B, mtu int, hosts [2]*testhost.Host, cs [2]container) {
	m := fmt.Sprint(mtu)
	for i := range hosts {
		local, remote, c := hosts[i], hosts[1-i], cs[i]
		vx := func(name, vni, port string) []string {
			return []string{"link", "add", name, "mtu", m, "type", "vxlan", "id", vni, "local", local.Addr.String(),
				"remote", remote.Addr.String(), "dev", "eth0", "dstport", port}
		}
		for _, args := range [][]string{
			vx("hvx0", "4242", "4790"),
			{"addr", "add", fmt.Sprintf("192.168.242.%d/24", i+1), "dev", "hvx0"},
			{"link", "set", "hvx0", "up"},
			{"link", "add", "hbr1", "mtu", m, "type", "bridge"},
			vx("hvx1", "4243", "4791"),
			{"link", "set", "hvx1", "master", "hbr1", "up"},
			{"link", "add", "hve1", "mtu", m, "master", "hbr1", "type", "veth", "peer", "name", "eth0", "mtu", m, "netns", fmt.Sprint(c.pid)},
			{"link", "set", "hve1", "up"},
			{"link", "set", "hbr1", "up"},
		} {
			ipIn(b, local.Netns, args)
		}
		for _, args := range [][]string{
			{"addr", "add", fmt.Sprintf("192.168.243.%d/24", i+1), "dev", "eth0"},
			{"link", "set", "eth0", "up"},
			{"link", "set", "lo", "up"},
		} {
			ipIn(b, fmt.Sprint(c.pid), args)
		}
	}
}

// ipIn runs `ip` with args in the namespace ns: a named one (`ip -n`),
// or a process's, given as its PID (through nsenter: `ip -n` takes names
// only).
func ipIn(b *testing.B, ns string, args []string) {
	b.Helper()
	cmd := exec.Command("ip", append([]string{"-n", ns}, args...)...)
	if _, err := strconv.Atoi(ns); err == nil {
		cmd = exec.Command("nsenter", append([]string{"--net=/proc/" + ns + "/ns/net", "ip"}, args...)...)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ip %v in %s: %v\n%s", args, ns, err, out)
	}
}

// iperf runs one 2-second iperf3 stream over path p and returns the
// received Gbit/s.
func iperf(b *testing.B, p tcpPath) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	srv, err := iperfServer(ctx, p)
	if err != nil {
		b.Fatal(err)
	}
	g, err := iperfClient(ctx, p)
	if err != nil {
		srv.Process.Kill()
	}
	srv.Wait()
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// iperfTogether runs a 2-second iperf3 stream over each of p and q at
// the same time, both servers listening before either client starts,
// and returns the Gbit/s each received.
func iperfTogether(b *testing.B, p, q tcpPath) [2]float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	var srvs []*exec.Cmd
	defer func() {
		for _, s := range srvs {
			s.Process.Kill()
			s.Wait()
		}
	}()
	for _, path := range []tcpPath{p, q} {
		srv, err := iperfServer(ctx, path)
		if err != nil {
			b.Fatal(err)
		}
		srvs = append(srvs, srv)
	}
	var got [2]float64
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, path := range []tcpPath{p, q} {
		wg.Go(func() { got[i], errs[i] = iperfClient(ctx, path) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		b.Fatal(err)
	}
	return got
}

// iperfPort is the port every iperf3 server listens on (one per
// namespace).
const iperfPort uint16 = 5299

// iperfServer starts a one-off iperf3 server at p's server end and
// returns once it listens.
func iperfServer(ctx context.Context, p tcpPath) (*exec.Cmd, error) {
	srv := exec.CommandContext(ctx, "nsenter", "--net="+p.server, "iperf3", "-s", "-1", "-p", strconv.Itoa(int(iperfPort)))
	if err := srv.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if listens(srv.Process.Pid, iperfPort) {
			return srv, nil
		}
		if time.Now().After(deadline) {
			srv.Process.Kill()
			srv.Wait()
			return nil, fmt.Errorf("iperf3 server for %s does not listen after 10 s", p.name)
		}
	}
}

// listens says whether a socket of pid's network namespace listens on
// TCP port (IPv4 or IPv6): /proc/PID/net/tcp{,6} list them, local address
// second, state (0A: listening) fourth. nsenter execs what it runs, so an
// iperf3 started through it has the PID nsenter had.
func listens(pid int, port uint16) bool {
	suffix := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		for _, line := range strings.Split(string(raw), "\n") {
			if fs := strings.Fields(line); len(fs) > 3 && strings.HasSuffix(fs[1], suffix) && fs[3] == "0A" {
				return true
			}
		}
	}
	return false
}

// iperfClient runs a 2-second stream to p's server and returns the
// received Gbit/s. The client runs on CPU 0 and the server on CPU 1 (on
// one CPU, both on it) for every path: where the two sit changes the
// figure more than most of what is measured.
func iperfClient(ctx context.Context, p tcpPath) (float64, error) {
	cpus := "0,1"
	if runtime.NumCPU() < 2 {
		cpus = "0,0"
	}
	out, err := exec.CommandContext(ctx, "nsenter", "--net="+p.client, "iperf3", "-c", p.addr, "-p", strconv.Itoa(int(iperfPort)),
		"-t", "2", "-A", cpus, "-J").Output()
	var res struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err == nil {
		err = json.Unmarshal(out, &res)
	}
	if err == nil && res.Error != "" {
		err = errors.New(res.Error)
	}
	if err != nil {
		return 0, fmt.Errorf("iperf3 over %s to %s: %w\n%s", p.name, p.addr, err, out)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9, nil
}

func needTool(b *testing.B, name string) {
	if _, err := exec.LookPath(name); err != nil {
		b.Skipf("needs %s (make bench installs it)", name)
	}
}

// BenchmarkVIPConnections reports connections/s from a container to a
// task on the other host, straight and through the VIP, alternating one
// of each (aim: VIP at 0.9 of straight or more), and the client's SYN
// retransmissions over the run (aim: none).
func BenchmarkVIPConnections(b *testing.B) {
	cl := testhost.NewT(b, 2)
	p1, _ := planeIn(b, cl.Hosts[0])
	p2, _ := planeIn(b, cl.Hosts[1])
	for _, p := range []*Plane{p1, p2} {
		mustDo(b, p.SetNetwork(netA))
	}
	client, task := newContainer(b), newContainer(b)
	ec, et := ep("c", netA, "10.77.0.10"), ep("t", netA, "10.77.0.11")
	mustDo(b, p1.Attach(client.ns(), ec))
	mustDo(b, p2.Attach(task.ns(), et))
	mustDo(b, p1.SetPeer(Peer{NetworkID: netA.ID, Addr: et.Addr.Addr(), Node: cl.Hosts[1].Addr}))
	mustDo(b, p2.SetPeer(Peer{NetworkID: netA.ID, Addr: ec.Addr.Addr(), Node: cl.Hosts[0].Addr}))
	vip := netip.MustParseAddr("10.77.0.200")
	mustDo(b, p1.SetVIPs(client.ns(), []VIP{{ServiceID: "web", Addr: vip, Backends: []netip.Addr{et.Addr.Addr()}}}))
	serve(b, task, ":80", "x")
	direct, viaVIP := netip.AddrPortFrom(et.Addr.Addr(), 80).String(), netip.AddrPortFrom(vip, 80).String()

	var tDirect, tVIP time.Duration
	var slowDirect, slowVIP int
	var maxConn time.Duration
	before := synRetrans(b, client)
	err := inNS(b, client.ns(), func() error {
		for b.Loop() {
			for _, c := range []struct {
				addr string
				sum  *time.Duration
				slow *int
			}{{direct, &tDirect, &slowDirect}, {viaVIP, &tVIP, &slowVIP}} {
				start := time.Now()
				if err := connectOnce(c.addr); err != nil {
					return err
				}
				took := time.Since(start)
				*c.sum += took
				maxConn = max(maxConn, took)
				if took > 900*time.Millisecond { // a SYN retransmitted: 1 s
					*c.slow++
				}
			}
		}
		return nil
	})
	mustDo(b, err)
	n := float64(b.N)
	b.ReportMetric(n/tDirect.Seconds(), "direct-conns/s")
	b.ReportMetric(n/tVIP.Seconds(), "vip-conns/s")
	b.ReportMetric(tDirect.Seconds()/tVIP.Seconds(), "vip/direct")
	b.ReportMetric(float64(synRetrans(b, client)-before), "syn-retransmits")
	b.ReportMetric(float64(slowDirect), "stalled-direct")
	b.ReportMetric(float64(slowVIP), "stalled-vip")
	b.ReportMetric(float64(maxConn.Microseconds())/1000, "max-conn-ms")
}

// connectOnce opens a connection, reads the answer to its end (the server
// closes first) and closes.
func connectOnce(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_, err = io.Copy(io.Discard, conn)
	return err
}

// BenchmarkSetVIPs is the time to rewrite a container's VIP table when a
// service's tasks change: 10 services of 10 tasks each, one batch.
func BenchmarkSetVIPs(b *testing.B) {
	p := &Plane{prefix: DefaultPrefix, vns: map[string]*nsConn{}}
	c := newContainer(b)
	vips := make([]VIP, 10)
	for i := range vips {
		vips[i] = VIP{ServiceID: fmt.Sprint(i), Addr: netip.AddrFrom4([4]byte{10, 9, byte(i), 2})}
		for j := range 10 {
			vips[i].Backends = append(vips[i].Backends, netip.AddrFrom4([4]byte{10, 9, byte(i), byte(10 + j)}))
		}
	}
	for b.Loop() {
		mustDo(b, p.SetVIPs(c.ns(), vips))
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/table")
}
