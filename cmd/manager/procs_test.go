package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"berth/ca"
	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/etcdtest"
	pb "berth/proto/berth/v1"
)

// settle bounds how long managers may take to converge after a change.
const settle = 30 * time.Second

// mgrProc is one berth-manager process of a test.
type mgrProc struct {
	t             testing.TB
	bin, dir, log string
	addr          string
	args          []string
	mu            sync.Mutex
	cmd           *exec.Cmd
	done          chan error
}

func buildManager(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binaries and runs managers")
	}
	if err := etcdtest.Installed(); err != nil {
		t.Skip(err)
	}
	bins, err := e2ecluster.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return bins.Manager
}

// newMgr prepares a manager on etcd at endpoint, with a fresh data dir.
func newMgr(t testing.TB, bin, name, endpoint string, more ...string) *mgrProc {
	return newProc(t, bin, name, append([]string{"--store", "etcd", "--etcd-endpoints", endpoint, "--etcd-lease-ttl", "2s"}, more...)...)
}

// newProc prepares a manager with a fresh data dir and port, and args.
func newProc(t testing.TB, bin, name string, args ...string) *mgrProc {
	dir := filepath.Join(t.TempDir(), name)
	p := &mgrProc{t: t, bin: bin, dir: dir, log: dir + ".log", addr: freeAddr(t)}
	p.args = append([]string{"--data-dir", dir, "--listen-addr", p.addr}, args...)
	return p
}

// start runs the manager; run returns its exit error if it ends.
func (p *mgrProc) start() {
	p.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p.log), 0o755); err != nil {
		p.t.Fatal(err)
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		p.t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(p.bin, p.args...)
	cmd.Env = append(os.Environ(), "HOME="+p.dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.done = cmd, done
	p.mu.Unlock()
	p.t.Cleanup(p.kill)
}

// kill ends the process with SIGKILL (kill -9).
func (p *mgrProc) kill() {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.cmd = nil
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// exit waits for the process to end by itself and returns its output.
func (p *mgrProc) exit(within time.Duration) string {
	p.t.Helper()
	select {
	case <-p.done:
		p.mu.Lock()
		p.cmd = nil
		p.mu.Unlock()
	case <-time.After(within):
		p.t.Fatalf("berth-manager %v still runs after %s; log:\n%s", p.args, within, p.logText())
	}
	return p.logText()
}

func (p *mgrProc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// control dials the manager's Control API with its own client bundle.
func (p *mgrProc) control() pb.ControlClient {
	p.t.Helper()
	bundle := filepath.Join(p.dir, "client")
	await.True(p.t, settle, func() bool {
		_, err := os.Stat(filepath.Join(bundle, "manager-addr"))
		return err == nil
	}, "manager %s writes its client bundle; log:\n%s", p.dir, p.logText)
	creds, err := ca.Dir(bundle).Load()
	if err != nil {
		p.t.Fatal(err)
	}
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig())))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { conn.Close() })
	return pb.NewControlClient(conn)
}

func call[T any](t testing.TB, f func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	return f(ctx)
}

func createService(cc pb.ControlClient, name string) func(context.Context) (*pb.CreateServiceResponse, error) {
	one := int64(1)
	return func(ctx context.Context) (*pb.CreateServiceResponse, error) {
		return cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: &pb.ServiceSpec{
			Annotations: &pb.Annotations{Name: name}, Replicas: &one,
			Task: &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "busybox:latest"}},
		}})
	}
}
