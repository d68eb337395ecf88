package dns

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// benchServices are 50 services of 3 ready tasks each on network n9
// (127.77.9.0/24): the names a container asks.
func benchServices() []Service {
	var out []Service
	for i := range 50 {
		s := Service{ID: fmt.Sprint("s", i), Name: fmt.Sprint("svc", i), NetworkID: "n9", VIP: addr(fmt.Sprintf("127.77.9.%d", 200+i%50))}
		for j := range 3 {
			s.Tasks = append(s.Tasks, Task{ID: fmt.Sprintf("t%d-%d", i, j), Name: fmt.Sprintf("svc%d.%d.t%d-%d", i, j+1, i, j),
				Addr: netip.AddrFrom4([4]byte{127, 77, 9, byte(1 + (i*3+j)%190)}), Ready: true})
		}
		out = append(out, s)
	}
	return out
}

// BenchmarkRespond is the query path alone (parse, look up, encode) for
// SERVICE, tasks.SERVICE and a task name: no allocation.
func BenchmarkRespond(b *testing.B) {
	n := Network{ID: "n9", Subnet: netip.MustParsePrefix("127.77.9.0/24")}
	t := emptyTable().withZones(map[string]*zone{"n9": buildZone(n, benchServices())})
	var reqs [][]byte
	for _, name := range []string{"svc7.", "tasks.svc7.", "svc7.2.t7-1."} {
		req, _ := new(mdns.Msg).SetQuestion(name, mdns.TypeA).Pack()
		reqs = append(reqs, req)
	}
	var q query
	buf := make([]byte, 0, maxUDP)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		out, _ := respond(buf[:0], &q, t, t.zones["n9"], addr("127.77.9.2"), reqs[i%len(reqs)], false)
		if len(out) == 0 {
			b.Fatal("no answer")
		}
		i++
	}
}

// BenchmarkVsDnsmasq: dnsperf against this server and against dnsmasq
// with the same 150 names (SERVICE, tasks.SERVICE, task names), one after
// the other in the same run on the same machine, three rounds of 3 s
// each; queries/s and p99.
func BenchmarkVsDnsmasq(b *testing.B) {
	for _, bin := range []string{"dnsperf", "dnsmasq"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Skipf("%s not installed: `make bench` installs it (Debian: dnsperf, dnsmasq-base)", bin)
		}
	}
	dir := b.TempDir()
	svcs := benchServices()
	queries, hosts := benchFiles(b, dir, svcs)
	s := New(Config{Upstreams: func() []netip.AddrPort { return nil }})
	b.Cleanup(s.Close)
	at := setNet(b, s, Network{ID: "n9", Subnet: netip.MustParsePrefix("127.77.9.0/24"), Listen: netip.MustParseAddrPort("127.77.9.1:0")})
	s.Apply(Update{Set: svcs})
	mq := startDnsmasq(b, hosts)
	var ours, theirs perf
	for b.Loop() {
		// Rounds alternate, so a burst of other load on the machine
		// falls on both; each figure is the median of its rounds.
		var bs, ds []perf
		for range 3 {
			bs = append(bs, dnsperf(b, at, queries))
			ds = append(ds, dnsperf(b, mq, queries))
		}
		ours, theirs = median(bs), median(ds)
	}
	b.Logf("medians of 3 rounds: berth %.0f q/s p99 %.2f ms (lost %d) | dnsmasq %.0f q/s p99 %.2f ms (lost %d)",
		ours.qps, ours.p99ms, ours.lost, theirs.qps, theirs.p99ms, theirs.lost)
	b.ReportMetric(ours.qps, "berth-q/s")
	b.ReportMetric(ours.p99ms, "berth-p99-ms")
	b.ReportMetric(theirs.qps, "dnsmasq-q/s")
	b.ReportMetric(theirs.p99ms, "dnsmasq-p99-ms")
	b.ReportMetric(ours.qps/theirs.qps, "berth/dnsmasq-q/s")
}

// benchFiles writes dnsperf's query file and dnsmasq's hosts file for
// the same records.
func benchFiles(b *testing.B, dir string, svcs []Service) (queries, hosts string) {
	var q, h strings.Builder
	for _, s := range svcs {
		fmt.Fprintf(&q, "%s A\ntasks.%s A\n", s.Name, s.Name)
		fmt.Fprintf(&h, "%s %s\n", s.VIP, s.Name)
		for _, t := range s.Tasks {
			fmt.Fprintf(&q, "%s A\n", t.Name)
			fmt.Fprintf(&h, "%s tasks.%s\n%s %s\n", t.Addr, s.Name, t.Addr, t.Name)
		}
	}
	queries, hosts = filepath.Join(dir, "queries"), filepath.Join(dir, "hosts")
	for f, body := range map[string]string{queries: q.String(), hosts: h.String()} {
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return queries, hosts
}

// startDnsmasq runs dnsmasq answering from hosts alone, on loopback.
func startDnsmasq(b *testing.B, hosts string) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	at := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--addn-hosts="+hosts, "--listen-address=127.0.0.1", "--bind-interfaces", "--port="+strconv.Itoa(int(at.Port())),
		"--pid-file=", "--cache-size=10000", "--log-facility=-", "--user=root")
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cancel()
		cmd.Wait()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := &mdns.Client{Timeout: 200 * time.Millisecond}
		if r, _, err := c.Exchange(new(mdns.Msg).SetQuestion("svc1.", mdns.TypeA), at.String()); err == nil && len(r.Answer) > 0 {
			return at
		}
		if time.Now().After(deadline) {
			b.Fatalf("dnsmasq does not answer on %s: %s", at, errb.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type perf struct {
	qps   float64
	p99ms float64
	lost  int
}

var (
	qpsLine     = regexp.MustCompile(`Queries per second:\s+([0-9.]+)`)
	lostLine    = regexp.MustCompile(`Queries lost:\s+([0-9]+)`)
	latencyLine = regexp.MustCompile(`^> \S+ .* ([0-9]+\.[0-9]+)$`)
)

// median is the median of ps by rate and by p99, each on its own.
func median(ps []perf) perf {
	pick := func(f func(perf) float64) float64 {
		v := make([]float64, len(ps))
		for i, p := range ps {
			v[i] = f(p)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	out := perf{qps: pick(func(p perf) float64 { return p.qps }), p99ms: pick(func(p perf) float64 { return p.p99ms })}
	for _, p := range ps {
		out.lost += p.lost
	}
	return out
}

// dnsperf runs dnsperf for 3 s against server, from an address of network
// n9, and reads its rate and (from -v's per-query lines) its p99.
func dnsperf(b *testing.B, server netip.AddrPort, queries string) perf {
	out, err := exec.Command("dnsperf", "-s", server.Addr().String(), "-p", strconv.Itoa(int(server.Port())),
		"-a", "127.77.9.2", "-d", queries, "-l", "3", "-q", "100", "-v").Output()
	if err != nil {
		b.Fatalf("dnsperf against %s: %v", server, err)
	}
	var p perf
	var lat []float64
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if m := latencyLine.FindStringSubmatch(line); m != nil {
			v, _ := strconv.ParseFloat(m[1], 64)
			lat = append(lat, v)
		} else if m := qpsLine.FindStringSubmatch(line); m != nil {
			p.qps, _ = strconv.ParseFloat(m[1], 64)
		} else if m := lostLine.FindStringSubmatch(line); m != nil {
			p.lost, _ = strconv.Atoi(m[1])
		}
	}
	if p.qps == 0 || len(lat) == 0 {
		b.Fatalf("dnsperf against %s: no rate or latencies in its output:\n%.2000s", server, out)
	}
	slices.Sort(lat)
	p.p99ms = lat[len(lat)*99/100] * 1000
	return p
}
