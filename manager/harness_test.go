package manager

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"berth/ca"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
	"berth/store/raftstore"
)

// settle bounds how long a cluster may take to converge after a change.
const settle = 20 * time.Second

func testLogger(name string) *slog.Logger {
	if os.Getenv("BERTH_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test_manager", name)
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// testManager is one manager run in-process, on its own port and data dir.
type testManager struct {
	t      testing.TB
	name   string
	cfg    Config
	m      *Manager
	cancel context.CancelFunc
	done   chan error
}

// newTestManager prepares (but does not start) a manager with a fresh data
// dir and port.
func newTestManager(t testing.TB, name string) *testManager {
	t.Helper()
	return &testManager{t: t, name: name, cfg: Config{
		DataDir:    filepath.Join(t.TempDir(), name),
		ListenAddr: freeAddr(t),
		Raft:       raftstore.Config{LeaderWait: time.Second, WriteTimeout: 5 * time.Second},
		Etcd:       etcdConfig(t),
		Logger:     testLogger(name),
	}}
}

// start runs the manager and waits until it serves; it returns Run's error
// when Run ends first (a refused join, say).
func (tm *testManager) start() error {
	tm.t.Helper()
	if err := tm.launch(); err != nil {
		return err
	}
	return tm.waitReady()
}

// launch starts Run without waiting for it to serve.
func (tm *testManager) launch() error {
	m, err := New(tm.cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tm.m, tm.cancel, tm.done = m, cancel, make(chan error, 1)
	go func() { tm.done <- m.Run(ctx) }()
	tm.t.Cleanup(tm.stop)
	return nil
}

func (tm *testManager) waitReady() error {
	select {
	case <-tm.m.Ready():
		return nil
	case err := <-tm.done:
		tm.done <- err
		tm.cancel()
		return err
	case <-time.After(settle):
		return fmt.Errorf("manager %s not ready after %s", tm.name, settle)
	}
}

func (tm *testManager) mustStart() {
	tm.t.Helper()
	if err := tm.start(); err != nil {
		tm.t.Fatalf("start manager %s: %v", tm.name, err)
	}
}

// stop cancels the manager's context and waits for Run to return. Safe to
// call more than once.
func (tm *testManager) stop() {
	if err := tm.halt(); err != nil {
		tm.t.Logf("manager %s stopped: %v", tm.name, err)
	}
}

// halt is stop returning Run's error.
func (tm *testManager) halt() error {
	if tm.cancel == nil {
		return nil
	}
	tm.cancel()
	tm.cancel = nil
	select {
	case err := <-tm.done:
		return err
	case <-time.After(settle):
		tm.t.Errorf("manager %s did not stop within %s of its context ending", tm.name, settle)
		return nil
	}
}

func (tm *testManager) running() bool { return tm.cancel != nil }

func (tm *testManager) bundleDir() string { return filepath.Join(tm.cfg.DataDir, clientDir) }

// waitBundle waits for the manager's client bundle.
func (tm *testManager) waitBundle() {
	tm.t.Helper()
	await.True(tm.t, settle, func() bool {
		_, err := os.Stat(filepath.Join(tm.bundleDir(), "manager-addr"))
		return err == nil
	}, "manager %s writes its client bundle", tm.name)
}

// control dials this manager with its own client bundle, as the CLI does.
func (tm *testManager) control() pb.ControlClient {
	tm.t.Helper()
	tm.waitBundle()
	creds, err := ca.Dir(tm.bundleDir()).Load()
	if err != nil {
		tm.t.Fatal(err)
	}
	return pb.NewControlClient(dialTLS(tm.t, tm.m.Addr(), credentials.NewTLS(creds.ClientConfig())))
}

func dialTLS(t testing.TB, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// testCluster is managers that joined one bootstrapped first manager.
type testCluster struct {
	t    testing.TB
	mgrs []*testManager
}

// newTestCluster bootstraps one manager and joins n-1 more with the
// manager join token, as an operator would, then waits until all are Raft
// voters and registered.
func newTestCluster(t testing.TB, n int) *testCluster {
	t.Helper()
	c := &testCluster{t: t}
	first := newTestManager(t, "m0")
	first.mustStart()
	c.mgrs = append(c.mgrs, first)
	tok := joinToken(t, first.control(), pb.NodeSpec_ROLE_MANAGER)
	for i := 1; i < n; i++ {
		tm := newTestManager(t, fmt.Sprintf("m%d", i))
		tm.joins(first, tok)
		tm.mustStart()
		c.mgrs = append(c.mgrs, tm)
	}
	c.waitMembers(n)
	return c
}

func joinToken(t testing.TB, cc pb.ControlClient, role pb.NodeSpec_Role) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	resp, err := cc.GetJoinToken(ctx, &pb.GetJoinTokenRequest{Role: role})
	if err != nil {
		t.Fatalf("join token: %v", err)
	}
	return resp.GetToken()
}

// leader returns the running manager that leads, or nil.
func (c *testCluster) leader() *testManager {
	for _, tm := range c.mgrs {
		if tm.running() && tm.m.IsLeader() {
			return tm
		}
	}
	return nil
}

func (c *testCluster) waitLeader() *testManager {
	c.t.Helper()
	await.True(c.t, settle, func() bool { return c.leader() != nil }, "a leader is elected")
	return c.leader()
}

// follower returns a running manager that does not lead.
func (c *testCluster) follower() *testManager {
	c.t.Helper()
	var f *testManager
	await.True(c.t, settle, func() bool {
		l := c.leader()
		for _, tm := range c.mgrs {
			if l != nil && tm.running() && tm != l {
				f = tm
				return true
			}
		}
		return false
	}, "a follower under a leader")
	return f
}

// waitMembers waits until the leader counts n voters and every running
// manager has registered its Node and written its client bundle.
func (c *testCluster) waitMembers(n int) {
	c.t.Helper()
	await.NoError(c.t, settle, func() error {
		l := c.leader()
		if l == nil {
			return errors.New("no leader")
		}
		members, err := l.m.Members()
		if err != nil {
			return err
		}
		if len(members) != n {
			return fmt.Errorf("%d managers, want %d", len(members), n)
		}
		for _, tm := range c.mgrs {
			if !tm.running() {
				continue
			}
			var node *pb.Node
			l.m.Store().View(func(tx store.ReadTx) { node = tx.GetNode(tm.m.NodeID()) })
			if node == nil {
				return fmt.Errorf("manager %s has no Node yet", tm.name)
			}
			if _, err := os.Stat(filepath.Join(tm.bundleDir(), "manager-addr")); err != nil {
				return fmt.Errorf("manager %s: %w", tm.name, err)
			}
		}
		return nil
	}, "%d managers join", n)
}

// ctx returns a context that ends within d, canceled at the test's end.
func ctxFor(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func serviceSpec(name string) *pb.ServiceSpec {
	one := int64(1)
	return &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: name},
		Replicas:    &one,
		Task:        &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "busybox:latest"}},
	}
}

// serviceNames lists the services a manager's Control API returns.
func serviceNames(ctx context.Context, cc pb.ControlClient) (map[string]bool, error) {
	resp, err := cc.ListServices(ctx, &pb.ListServicesRequest{})
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range resp.GetServices() {
		out[s.GetSpec().GetAnnotations().GetName()] = true
	}
	return out, nil
}
