// Package etcdtest runs a real etcd server (Debian's etcd-server) for
// tests and benchmarks, and says which state backend a test run uses:
// BERTH_TEST_STORE=raft (the default) or etcd. It is for tests only.
package etcdtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// StoreEnv names the environment variable that picks the backend the
// manager clusters of a test run keep their state in.
const StoreEnv = "BERTH_TEST_STORE"

// Store is the backend of this test run: "raft" or "etcd". Any other
// value of BERTH_TEST_STORE is an error, not a silent Raft run.
func Store() (string, error) {
	switch v := os.Getenv(StoreEnv); v {
	case "", "raft":
		return "raft", nil
	case "etcd":
		return "etcd", nil
	default:
		return "", fmt.Errorf("%s=%q: want raft or etcd", StoreEnv, v)
	}
}

// OnEtcd says whether this test run keeps cluster state in etcd.
func OnEtcd() bool {
	s, _ := Store()
	return s == "etcd"
}

// Installed says whether the etcd binary is on PATH (`make deps`).
func Installed() error {
	if _, err := exec.LookPath("etcd"); err != nil {
		return errors.New("etcd is not installed: `make deps` installs Debian's etcd-server")
	}
	return nil
}

// Server is one etcd member on its own ports, with its data in Dir.
type Server struct {
	Dir          string
	client, peer string
	cmd          *exec.Cmd
	done         chan error
}

// Start runs a one-member etcd listening on host (an IP: 127.0.0.1, or
// the test hosts' gateway) at free ports, with its data and log in dir,
// and waits until it answers.
func Start(ctx context.Context, dir, host string) (*Server, error) {
	if err := Installed(); err != nil {
		return nil, err
	}
	client, err := freePort(host)
	if err != nil {
		return nil, err
	}
	peer, err := freePort(host)
	if err != nil {
		return nil, err
	}
	s := &Server{Dir: dir, client: client, peer: peer}
	if err := s.Restart(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// Endpoint is the client URL managers are given.
func (s *Server) Endpoint() string { return "http://" + s.client }

// PID is the server process's ID (0 when stopped).
func (s *Server) PID() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Restart starts the server again on the same ports and data (or for
// the first time) and waits until it answers.
func (s *Server) Restart(ctx context.Context) error {
	if s.cmd != nil {
		return errors.New("etcdtest: the server is running")
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(s.Dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	peer := "http://" + s.peer
	cmd := exec.Command("etcd", "--name", "t", "--data-dir", filepath.Join(s.Dir, "data"),
		"--listen-client-urls", s.Endpoint(), "--advertise-client-urls", s.Endpoint(),
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "t="+peer)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A test binary that crashes takes its etcd with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start etcd: %w", err)
	}
	s.cmd, s.done = cmd, make(chan error, 1)
	go func(done chan error) { done <- cmd.Wait() }(s.done)
	return s.awaitAnswer(ctx, 30*time.Second)
}

// awaitAnswer waits until the server answers a read.
func (s *Server) awaitAnswer(ctx context.Context, timeout time.Duration) error {
	cli, err := s.Client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "/")
		rcancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("etcd at %s does not answer (log: %s): %w", s.Endpoint(), filepath.Join(s.Dir, "etcd.log"), err)
		case <-s.done:
			s.cmd = nil
			return fmt.Errorf("etcd exited at start (log: %s)", filepath.Join(s.Dir, "etcd.log"))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Client is a plain client of the server.
func (s *Server) Client() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{s.Endpoint()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// Pause stops the server with SIGSTOP; Resume continues it.
func (s *Server) Pause() error { return s.signal(syscall.SIGSTOP) }

// Resume continues a paused server.
func (s *Server) Resume() error { return s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) error {
	if s.cmd == nil {
		return errors.New("etcdtest: the server is not running")
	}
	return s.cmd.Process.Signal(sig)
}

// Kill ends the server with SIGKILL; Restart starts it again.
func (s *Server) Kill() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGCONT) // a paused server dies too
	s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
	return nil
}

// Stop ends the server with SIGTERM (SIGKILL after 10 s), keeping its data.
func (s *Server) Stop() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGCONT)
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
	s.cmd = nil
	return nil
}
