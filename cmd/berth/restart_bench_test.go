package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"berth/ca"
	"berth/internal/cputime"
	"berth/manager/controlapi"
	pb "berth/proto/berth/v1"
	"berth/store/raftstore"
)

// BenchmarkRestart100k is issue #17's restart aim (a manager with 100k
// tasks answers within 2 s of starting): a one-manager Raft store on disk
// holding 100 services of 1,000 replicas (~0.6 KB a task, as in
// BenchmarkLists100k), with its state in a snapshot and the log after it,
// is opened again; measured from Open until `berth service ls` through the
// real Control API, whose consistent-read barrier waits for the leader to
// have applied the whole log, lists every service.
func BenchmarkRestart100k(b *testing.B) {
	shape := scaleShape{services: 100, replicas: 1000, nodes: 100}
	dataDir := b.TempDir()
	l, err := raftstore.ListenTCP("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	node := openBenchNode(b, dataDir, addr, l)
	fillStore(b, node.Store(), shape)
	if err := node.Shutdown(); err != nil {
		b.Fatal(err)
	}
	dir, creds := listBundle(b)
	var total, cpu time.Duration
	for b.Loop() {
		start, cpu0 := time.Now(), cputime.Used()
		l, err := raftstore.ListenTCP(addr)
		if err != nil {
			b.Fatal(err)
		}
		node := openBenchNode(b, dataDir, addr, l)
		stop := serveControl(b, node, creds, dir)
		out := waitServiceLs(b, dir, 30*time.Second)
		total, cpu = total+time.Since(start), cpu+cputime.Used()-cpu0
		if n := strings.Count(out, "\n") - 1; n != shape.services {
			b.Fatalf("service ls after restart lists %d services, want %d:\n%s", n, shape.services, out)
		}
		stop()
		if err := node.Shutdown(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/restart")
	// CPU seconds of the process (the CLI included) per restart: on a
	// loaded machine a steadier figure than the wall clock.
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/restart")
}

func openBenchNode(b *testing.B, dataDir, addr string, l *raftstore.TCPStreamLayer) *raftstore.Node {
	b.Helper()
	n, err := raftstore.Open(context.Background(), raftstore.Config{
		DataDir: dataDir, NodeID: "m1", Addr: addr, StreamLayer: l, Bootstrap: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// serveControl serves the Control API over node's store on a fresh port,
// as a manager does (reads pass the leader's ReadIndex), and points the
// CLI bundle in dir at it.
func serveControl(b *testing.B, node *raftstore.Node, creds *ca.Credentials, dir string) (stop func()) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(creds.ServerConfig())))
	reads := func(ctx context.Context) error { _, err := node.ReadIndex(ctx); return err }
	pb.RegisterControlServer(srv, controlapi.New(controlapi.Config{Store: node.Store(), Reads: reads, ClusterID: "c1"}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	if err := os.WriteFile(filepath.Join(dir, bundleAddr), []byte(ln.Addr().String()), 0o600); err != nil {
		b.Fatal(err)
	}
	return func() {
		srv.Stop()
		if err := <-done; err != nil {
			b.Errorf("serve: %v", err)
		}
	}
}

// waitServiceLs runs `berth service ls` until it succeeds, as an operator
// retrying would, and returns its output.
func waitServiceLs(b *testing.B, dir string, limit time.Duration) string {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs([]string{"--tls-dir", dir, "service", "ls"})
		err := root.ExecuteContext(context.Background())
		if err == nil {
			return out.String()
		}
		if time.Now().After(deadline) {
			b.Fatalf("service ls still fails %s after restart: %v\n%s", limit, err, out.String())
		}
		time.Sleep(10 * time.Millisecond) // a client's retry interval
	}
}
