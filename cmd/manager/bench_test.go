package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
)

// Benchmarks of three berth-manager processes on loopback, on each state
// backend, next to the etcd they use. Run:
//
//	go test -run '^$' -bench 'ControlWrites|Failover' ./cmd/manager
//
// writes/s and p50-ms/p99-ms: Control API writes (secret create: one
// store write each, no control loop work after it), clients spread over
// the three managers. etcd-put is etcd's own rate on the same machine in
// the same run: a Go clientv3 loop of Put (256-byte values) at the same
// concurrency. Failover: kill -9 the leader; write-s is the time until a
// write succeeds through another manager, leader-s until another manager
// is reported leading (etcd's leader lease is the default 10 s).

// benchCluster starts three managers on backend ("raft" or "etcd" at
// endpoint) and returns them with a Control client of each.
func benchCluster(b *testing.B, bin, backend, endpoint string) ([]*mgrProc, []pb.ControlClient) {
	b.Helper()
	var args []string
	if backend == "etcd" {
		args = []string{"--store", "etcd", "--etcd-endpoints", endpoint, "--etcd-prefix", "/bench-" + fmt.Sprint(time.Now().UnixNano())}
	}
	m1 := newProc(b, bin, "m1", args...)
	m1.start()
	c1 := m1.control()
	tok, err := call(b, func(ctx context.Context) (*pb.GetJoinTokenResponse, error) {
		return c1.GetJoinToken(ctx, &pb.GetJoinTokenRequest{Role: pb.NodeSpec_ROLE_MANAGER})
	})
	if err != nil {
		b.Fatal(err)
	}
	mgrs, ccs := []*mgrProc{m1}, []pb.ControlClient{c1}
	for _, name := range []string{"m2", "m3"} {
		m := newProc(b, bin, name, append(slices.Clone(args), "--join", m1.addr, "--token", tok.GetToken())...)
		m.start()
		mgrs, ccs = append(mgrs, m), append(ccs, m.control())
	}
	await.NoError(b, settle, func() error { return threeManagers(b, ccs[2]) }, "three managers")
	return mgrs, ccs
}

func threeManagers(t testing.TB, cc pb.ControlClient) error {
	resp, err := call(t, func(ctx context.Context) (*pb.GetClusterResponse, error) {
		return cc.GetCluster(ctx, &pb.GetClusterRequest{})
	})
	if err == nil && (len(resp.GetMembers()) != 3 || resp.GetLeaderAddr() == "") {
		err = fmt.Errorf("%d managers, leader %q", len(resp.GetMembers()), resp.GetLeaderAddr())
	}
	return err
}

var secretSeq atomic.Int64

func createSecret(ctx context.Context, cc pb.ControlClient) error {
	_, err := cc.CreateSecret(ctx, &pb.CreateSecretRequest{Spec: &pb.SecretSpec{
		Annotations: &pb.Annotations{Name: fmt.Sprint("bench-", secretSeq.Add(1))}, Data: []byte("s3cr3t"),
	}})
	return err
}

// concurrently runs b.N calls of op over clients goroutines and reports
// the rate and latencies.
func concurrently(b *testing.B, clients int, op func(ctx context.Context, i int) error) {
	var next atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for int(next.Add(1)) <= b.N {
				t0 := time.Now()
				if err := op(context.Background(), c); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
	slices.Sort(lat)
	if len(lat) > 0 {
		q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))]) / 1e6 }
		b.ReportMetric(q(0.50), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
	}
}

var benchClients = []int{1, 16, 64}

func BenchmarkControlWrites(b *testing.B) {
	bin := buildManager(b)
	e := etcdtest.New(b)
	for _, backend := range []string{"raft", "etcd"} {
		mgrs, ccs := benchCluster(b, bin, backend, e.Endpoint())
		for _, n := range benchClients {
			b.Run(fmt.Sprintf("%s/clients=%d", backend, n), func(b *testing.B) {
				concurrently(b, n, func(ctx context.Context, c int) error { return createSecret(ctx, ccs[c%len(ccs)]) })
			})
		}
		for _, m := range mgrs {
			m.kill()
		}
	}
	cli, err := e.Client()
	if err != nil {
		b.Fatal(err)
	}
	defer cli.Close()
	value := strings.Repeat("v", 256)
	var seq atomic.Int64
	for _, n := range benchClients {
		b.Run(fmt.Sprintf("etcd-put/clients=%d", n), func(b *testing.B) {
			concurrently(b, n, func(ctx context.Context, _ int) error {
				_, err := cli.Put(ctx, fmt.Sprint("/bench-put/", seq.Add(1)), value)
				return err
			})
		})
	}
}

// failoversPerOp is how many leader kills one benchmark op times.
const failoversPerOp = 3

func BenchmarkFailover(b *testing.B) {
	bin := buildManager(b)
	e := etcdtest.New(b)
	for _, backend := range []string{"raft", "etcd"} {
		b.Run(backend, func(b *testing.B) {
			mgrs, ccs := benchCluster(b, bin, backend, e.Endpoint())
			var write, lead []time.Duration
			for range b.N * failoversPerOp {
				w, l := failover(b, mgrs, ccs)
				write, lead = append(write, w), append(lead, l)
			}
			b.ReportMetric(mean(write).Seconds(), "write-s")
			b.ReportMetric(slices.Max(write).Seconds(), "max-write-s")
			b.ReportMetric(mean(lead).Seconds(), "leader-s")
			b.ReportMetric(slices.Max(lead).Seconds(), "max-leader-s")
			for _, m := range mgrs {
				m.kill()
			}
		})
	}
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(len(ds))
}

// failover kills the leader with SIGKILL, times the first write through a
// survivor and the next leader, then restarts the killed manager and
// waits until all three are back.
func failover(b *testing.B, mgrs []*mgrProc, ccs []pb.ControlClient) (write, lead time.Duration) {
	b.Helper()
	l, survivor, killed := killLeader(b, mgrs, ccs)
	var wrote, led atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 2*settle)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
			err := createSecret(cctx, survivor)
			ccancel()
			if err == nil {
				wrote.Store(int64(time.Since(killed)))
				return
			}
		}
	}()
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			if nl, err := leaderOf(b, survivor, mgrs); err == nil && nl != l {
				led.Store(int64(time.Since(killed)))
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	wg.Wait()
	if wrote.Load() == 0 || led.Load() == 0 {
		b.Fatalf("after the leader's kill -9: no write (%v) or no new leader (%v) within %s", wrote.Load() != 0, led.Load() != 0, 2*settle)
	}
	l.start()
	for _, cc := range ccs {
		await.NoError(b, settle, func() error { return threeManagers(b, cc) }, "the killed manager is back")
	}
	return time.Duration(wrote.Load()), time.Duration(led.Load())
}
