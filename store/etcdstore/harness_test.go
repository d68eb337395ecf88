package etcdstore

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"berth/internal/await"
	berthv1 "berth/proto/berth/v1"
	"berth/store"
)

// settle bounds how long a change may take to reach every backend.
const settle = 20 * time.Second

// etcdProc is a real etcd server (Debian's etcd-server) on loopback,
// with its data in the test's temp dir.
type etcdProc struct {
	t                 *testing.T
	dir, client, peer string
	cmd               *exec.Cmd
	done              chan error
	// tls, when set, makes the server speak TLS and ask for client
	// certificates signed by tls.ca.
	tls *tlsFiles
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startEtcd runs a one-member etcd for t, stopped at cleanup.
func startEtcd(t *testing.T) *etcdProc {
	t.Helper()
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd is not installed: `make deps` installs Debian's etcd-server")
	}
	e := &etcdProc{t: t, dir: t.TempDir(), client: freePort(t), peer: freePort(t)}
	return e.run()
}

// run starts e and stops it at cleanup.
func (e *etcdProc) run() *etcdProc {
	t := e.t
	e.start()
	t.Cleanup(e.stop)
	return e
}

func (e *etcdProc) endpoint() string {
	if e.tls != nil {
		return "https://" + e.client
	}
	return "http://" + e.client
}

func (e *etcdProc) start() {
	e.t.Helper()
	logf, err := os.OpenFile(filepath.Join(e.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		e.t.Fatal(err)
	}
	defer logf.Close()
	peer := "http://" + e.peer
	args := []string{"--name", "t", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.endpoint(), "--advertise-client-urls", e.endpoint(),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "t=" + peer}
	if e.tls != nil {
		args = append(args, "--cert-file", e.tls.serverCert, "--key-file", e.tls.serverKey,
			"--trusted-ca-file", e.tls.ca, "--client-cert-auth")
	}
	e.cmd = exec.Command("etcd", args...)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	if err := e.cmd.Start(); err != nil {
		e.t.Fatalf("start etcd: %v", err)
	}
	e.done = make(chan error, 1)
	go func(cmd *exec.Cmd, done chan error) { done <- cmd.Wait() }(e.cmd, e.done)
	if e.tls != nil {
		e.awaitTLS()
		return
	}
	cli := e.dial()
	defer cli.Close()
	await.NoError(e.t, settle, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "/")
		return err
	}, "etcd answers")
}

// stop ends the server (it keeps its data for a later start).
func (e *etcdProc) stop() {
	if e.cmd == nil {
		return
	}
	e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(10 * time.Second):
		e.cmd.Process.Kill()
		<-e.done
	}
	e.cmd = nil
}

// dial is a plain client of the server.
func (e *etcdProc) dial() *clientv3.Client {
	e.t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		e.t.Fatal(err)
	}
	return cli
}

func testLogger() *slog.Logger {
	if os.Getenv("BERTH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// open opens a backend on prefix, as one manager does, without running it.
func open(t *testing.T, e *etcdProc, prefix string) *Backend {
	t.Helper()
	cli, err := Dial(t.Context(), DialConfig{Endpoints: []string{e.endpoint()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	b, err := Open(t.Context(), Config{Client: cli, Prefix: prefix, RequestTimeout: 2 * time.Second, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// run runs b until the test ends.
func run(t *testing.T, b *Backend) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("backend run: %v", err)
		}
	})
}

func service(id, name string) *berthv1.Service {
	return &berthv1.Service{Id: id, Spec: &berthv1.ServiceSpec{Annotations: &berthv1.Annotations{Name: name}}}
}

func create(ctx context.Context, b *Backend, s *berthv1.Service) error {
	return b.Store().Update(ctx, func(tx store.Tx) error { return tx.CreateService(s) })
}

// getService reads a service from b's view.
func getService(b *Backend, id string) *berthv1.Service {
	var s *berthv1.Service
	b.Store().View(func(tx store.ReadTx) { s = tx.GetService(id) })
	return s
}

// awaitService waits until b's view holds service id at version.
func awaitService(t *testing.T, b *Backend, id string, version uint64) {
	t.Helper()
	await.NoError(t, settle, func() error {
		s := getService(b, id)
		if got := s.GetMeta().GetVersion(); s == nil || got != version {
			return fmt.Errorf("service %s at version %d", id, got)
		}
		return nil
	}, "service %s at version %d", id, version)
}

// modRevision is the revision etcd last wrote key at (0: absent).
func modRevision(t *testing.T, e *etcdProc, key string) int64 {
	t.Helper()
	cli := e.dial()
	defer cli.Close()
	resp, err := cli.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0
	}
	return resp.Kvs[0].ModRevision
}
