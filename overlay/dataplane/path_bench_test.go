package dataplane

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"berth/internal/testhost"
)

// The data-path benchmarks put berth's figure next to its yardstick in the
// same run, on two test hosts (network namespaces on a bridge):
//   - TCP throughput, one iperf3 stream for 3 s: host to host on the
//     underlay, a VXLAN pair built by hand with `ip link`, and container
//     to container across the hosts over berth's overlay;
//   - connections per second from a container to a task on the other
//     host, straight to the task and through the service's VIP, with the
//     SYNs the client had to retransmit (each a stalled second).

// BenchmarkTCPThroughput reports Gbit/s of the three paths and berth's
// overlay over the hand-built VXLAN pair (aim: 0.95 or more).
func BenchmarkTCPThroughput(b *testing.B) {
	needTool(b, "iperf3")
	cl := testhost.NewT(b, 2)
	h1, h2 := cl.Hosts[0], cl.Hosts[1]
	handBuiltVXLAN(b, h1, h2)
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

	// Three alternating rounds, medians: other load on the machine falls
	// on all three paths alike.
	var under, hand, berth []float64
	for b.Loop() {
		for range 3 {
			under = append(under, iperf(b, h1.NetnsPath(), h2.NetnsPath(), h2.Addr.String()))
			hand = append(hand, iperf(b, h1.NetnsPath(), h2.NetnsPath(), "192.168.242.2"))
			berth = append(berth, iperf(b, c1.ns(), c2.ns(), e2.Addr.Addr().String()))
		}
	}
	b.ReportMetric(median(under), "underlay-Gbit/s")
	b.ReportMetric(median(hand), "vxlan-by-hand-Gbit/s")
	b.ReportMetric(median(berth), "berth-overlay-Gbit/s")
	b.ReportMetric(median(berth)/median(hand), "berth/by-hand")
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

// handBuiltVXLAN joins h1 and h2 with a VXLAN pair made with `ip link`
// (VNI 4242, port 4790, so as not to meet berth's devices), 192.168.242.1
// and .2/24.
func handBuiltVXLAN(b *testing.B, h1, h2 *testhost.Host) {
	for i, pair := range [][2]*testhost.Host{{h1, h2}, {h2, h1}} {
		local, remote := pair[0], pair[1]
		for _, args := range [][]string{
			{"link", "add", "hvx0", "type", "vxlan", "id", "4242", "local", local.Addr.String(), "remote", remote.Addr.String(), "dev", "eth0", "dstport", "4790"},
			{"addr", "add", fmt.Sprintf("192.168.242.%d/24", i+1), "dev", "hvx0"},
			{"link", "set", "hvx0", "up"},
		} {
			if out, err := exec.Command("ip", append([]string{"-n", local.Netns}, args...)...).CombinedOutput(); err != nil {
				b.Fatalf("ip %v in %s: %v\n%s", args, local.Name, err, out)
			}
		}
	}
}

// iperf runs one 3-second iperf3 stream from the namespace at client to
// a server in the namespace at server, reached as addr, and returns the
// received Gbit/s.
func iperf(b *testing.B, client, server, addr string) float64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(b.Context(), 30*time.Second)
	defer cancel()
	srv := exec.CommandContext(ctx, "nsenter", "--net="+server, "iperf3", "-s", "-1", "-p", "5299")
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	defer srv.Wait()
	type result struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	var res result
	var out []byte
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		out, err = exec.CommandContext(ctx, "nsenter", "--net="+client, "iperf3", "-c", addr, "-p", "5299", "-t", "3", "-J").Output()
		res = result{}
		if err == nil {
			err = json.Unmarshal(out, &res)
		}
		if err == nil && res.Error != "" {
			err = errors.New(res.Error)
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the server is not listening yet
	}
	if err != nil {
		srv.Process.Kill()
		b.Fatalf("iperf3 to %s: %v\n%s", addr, err, out)
	}
	return res.End.SumReceived.BitsPerSecond / 1e9
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
