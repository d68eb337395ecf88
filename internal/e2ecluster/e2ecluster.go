// Package e2ecluster brings up a real berth cluster on test hosts: each
// manager and agent is a berth-manager or berth-agent process in a network
// namespace of its own (internal/testhost), images come from a local
// registry on the test bridge (internal/testimage), and the CLI talks to
// the managers over mutual TLS like a user's would. End-to-end tests,
// `make demo` and the end-to-end benchmarks share it.
package e2ecluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"berth/internal/etcdtest"
	"berth/internal/testhost"
	"berth/internal/testimage"
)

// ManagerPort is the port every manager listens on, on its host's address.
const ManagerPort = 4242

// Bins are the paths of the three binaries.
type Bins struct{ CLI, Manager, Agent string }

// BinDirEnv names a directory holding berth, berth-manager and
// berth-agent already built; Build then uses them as they are. The cgroup
// v2 VM (make test-cgroup2) sets it: it has no go tool.
const BinDirEnv = "BERTH_BIN_DIR"

// Build compiles the binaries into dir with the go tool, or returns the
// prebuilt ones in $BERTH_BIN_DIR when that is set.
func Build(ctx context.Context, dir string) (Bins, error) {
	if pre := os.Getenv(BinDirEnv); pre != "" {
		b := binsIn(pre)
		for _, p := range []string{b.CLI, b.Manager, b.Agent} {
			if _, err := os.Stat(p); err != nil {
				return b, fmt.Errorf("prebuilt binaries ($%s): %w", BinDirEnv, err)
			}
		}
		return b, nil
	}
	b := binsIn(dir)
	root, err := moduleRoot()
	if err != nil {
		return b, err
	}
	for out, pkg := range map[string]string{b.CLI: "./cmd/berth", b.Manager: "./cmd/manager", b.Agent: "./cmd/agent"} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go build %s: %w\n%s", pkg, err, o)
		}
	}
	return b, nil
}

func binsIn(dir string) Bins {
	return Bins{CLI: filepath.Join(dir, "berth"), Manager: filepath.Join(dir, "berth-manager"), Agent: filepath.Join(dir, "berth-agent")}
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("find module root: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("find module root: not inside the berth module")
	}
	return filepath.Dir(gomod), nil
}

// Options configures Up.
type Options struct {
	Managers, Agents int
	Bins             Bins
	// Dir holds every node's data dir and log file.
	Dir string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// AgentLabels, if set, gives agent i (from 0) its --label flags.
	AgentLabels func(i int) []string
	// AgentArgs are more flags for every agent.
	AgentArgs []string
	// SpareHosts are made but left empty, for AddAgent.
	SpareHosts int
	// MetricsPort, if set, has every node serve /metrics on its host's
	// address at this port (--metrics-addr); see Node.MetricsURL.
	MetricsPort int
	// Store is where the managers keep the cluster state: "raft", or
	// "etcd" for a real etcd the cluster starts on the hosts' gateway
	// (Cluster.Etcd); empty means BERTH_TEST_STORE's choice (raft unset).
	Store string
}

// EtcdLeaseTTL is the etcd leader's lease on test clusters: a killed
// leader is replaced within it.
const EtcdLeaseTTL = 3 * time.Second

// Node is one berth process on one host.
type Node struct {
	Name    string // "m1", "a2"
	Host    *testhost.Host
	DataDir string
	Log     string
	Args    []string

	mu   sync.Mutex
	proc *testhost.Proc
}

// Addr is the node's manager address (managers, and agents once promoted).
func (n *Node) Addr() string {
	return net.JoinHostPort(n.Host.Addr.String(), fmt.Sprint(ManagerPort))
}

// Cluster is a running cluster on test hosts.
type Cluster struct {
	Hosts    *testhost.Cluster
	Images   *testimage.Fixture
	Managers []*Node
	Agents   []*Node
	// Etcd is the etcd the managers keep the state in (Options.Store
	// "etcd"), nil on Raft.
	Etcd  *etcdtest.Server
	opts  Options
	log   *slog.Logger
	token string
	// cgroups is the parent of the agents' cgroup parents (cgroups.go).
	cgroups string
}

// Up creates the hosts and the registry, bootstraps the first manager,
// joins the other managers and the agents, and waits until every node is
// ready. On error it tears down what it made.
func Up(ctx context.Context, opts Options) (c *Cluster, err error) {
	if opts.Managers < 1 {
		return nil, errors.New("e2ecluster: need at least one manager")
	}
	c = &Cluster{opts: opts, log: opts.Logger}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	defer func() {
		if err != nil {
			c.Close()
			c = nil
		}
	}()
	SweepCgroups()
	c.Hosts, err = testhost.Create(ctx, testhost.Options{N: opts.Managers + opts.Agents + opts.SpareHosts})
	if err != nil {
		return c, err
	}
	c.cgroups = fmt.Sprintf("/%s%d-e2e-%s", cgroupPrefix, os.Getpid(), c.Hosts.ID)
	c.Images, err = testimage.StartAt(ctx, net.JoinHostPort(c.Hosts.Gateway.String(), "0"), nil)
	if err != nil {
		return c, fmt.Errorf("start registry: %w", err)
	}
	c.log.Info("registry ready", "addr", c.Images.Registry.Addr())
	storeArgs, err := c.startStore(ctx)
	if err != nil {
		return c, err
	}
	for i := range opts.Managers {
		n := &Node{Name: fmt.Sprintf("m%d", i+1), Host: c.Hosts.Hosts[i], DataDir: filepath.Join(opts.Dir, fmt.Sprintf("m%d", i+1))}
		n.Log = n.DataDir + ".log"
		n.Args = []string{"--data-dir", n.DataDir, "--listen-addr", n.Addr(), "--insecure-registry", c.Images.Registry.Addr()}
		n.Args = append(n.Args, c.metricsArgs(n)...)
		n.Args = append(n.Args, storeArgs...)
		if i > 0 {
			tok, err := c.CLI(ctx, "cluster", "join-token", "-q", "manager")
			if err != nil {
				return c, err
			}
			n.Args = append(n.Args, "--join", c.Managers[0].Addr(), "--token", strings.TrimSpace(tok))
		}
		if err := c.start(ctx, n, opts.Bins.Manager); err != nil {
			return c, err
		}
		c.Managers = append(c.Managers, n)
		if err := c.waitCLI(ctx, n); err != nil {
			return c, err
		}
		c.log.Info("manager up", "name", n.Name, "addr", n.Addr())
	}
	tok, err := c.CLI(ctx, "cluster", "join-token", "-q", "worker")
	if err != nil {
		return c, err
	}
	c.token = strings.TrimSpace(tok)
	for range opts.Agents {
		if _, err := c.startAgent(ctx); err != nil {
			return c, err
		}
	}
	err = c.WaitNodes(ctx, opts.Managers+opts.Agents)
	return c, err
}

// AddAgent starts one more agent on a spare host and waits until its node
// is ready.
func (c *Cluster) AddAgent(ctx context.Context) (*Node, error) {
	n, err := c.startAgent(ctx)
	if err != nil {
		return nil, err
	}
	return n, c.poll(ctx, 60*time.Second, "agent "+n.Name+" ready", func() error {
		nd, err := c.NodeByName(ctx, n.Name)
		if err == nil && nd.Status != "ready" {
			err = fmt.Errorf("%s is %s", n.Name, nd.Status)
		}
		return err
	})
}

// startAgent starts an agent on the next unused host.
func (c *Cluster) startAgent(ctx context.Context) (*Node, error) {
	i := len(c.Agents)
	if len(c.Managers)+i >= len(c.Hosts.Hosts) {
		return nil, errors.New("e2ecluster: no spare host for another agent (Options.SpareHosts)")
	}
	h := c.Hosts.Hosts[len(c.Managers)+i]
	n := &Node{Name: fmt.Sprintf("a%d", i+1), Host: h, DataDir: filepath.Join(c.opts.Dir, fmt.Sprintf("a%d", i+1))}
	n.Log = n.DataDir + ".log"
	n.Args = []string{"--data-dir", n.DataDir, "--join", c.managerAddrs(), "--token", c.token,
		"--advertise-addr", h.Addr.String(), "--hostname", n.Name, "--insecure-registry", c.Images.Registry.Addr(),
		// Where its manager listens once `berth node promote` makes it one.
		"--manager-listen-addr", n.Addr(),
		"--cgroup-parent", c.cgroups + "/" + n.Name}
	n.Args = append(n.Args, c.metricsArgs(n)...)
	if c.opts.AgentLabels != nil {
		for _, l := range c.opts.AgentLabels(i) {
			n.Args = append(n.Args, "--label", l)
		}
	}
	n.Args = append(n.Args, c.opts.AgentArgs...)
	if err := c.start(ctx, n, c.opts.Bins.Agent); err != nil {
		return nil, err
	}
	c.Agents = append(c.Agents, n)
	return n, nil
}

// metricsArgs are n's --metrics-addr flag, when Options.MetricsPort is set.
func (c *Cluster) metricsArgs(n *Node) []string {
	if c.opts.MetricsPort == 0 {
		return nil
	}
	return []string{"--metrics-addr", net.JoinHostPort(n.Host.Addr.String(), fmt.Sprint(c.opts.MetricsPort))}
}

// MetricsURL is n's /metrics address (with Options.MetricsPort set).
func (c *Cluster) MetricsURL(n *Node) string {
	return "http://" + net.JoinHostPort(n.Host.Addr.String(), fmt.Sprint(c.opts.MetricsPort)) + "/metrics"
}

// startStore starts etcd when the managers keep their state there, and
// returns the managers' flags for the store.
func (c *Cluster) startStore(ctx context.Context) ([]string, error) {
	store := c.opts.Store
	if store == "" {
		var err error
		if store, err = etcdtest.Store(); err != nil {
			return nil, err
		}
	}
	switch store {
	case "raft":
		return nil, nil
	case "etcd":
	default:
		return nil, fmt.Errorf("e2ecluster: Options.Store %q: want raft or etcd", store)
	}
	e, err := etcdtest.Start(ctx, filepath.Join(c.opts.Dir, "etcd"), c.Hosts.Gateway.String())
	if err != nil {
		return nil, err
	}
	c.Etcd = e
	c.log.Info("etcd ready", "endpoint", e.Endpoint())
	return []string{"--store", "etcd", "--etcd-endpoints", e.Endpoint(), "--etcd-lease-ttl", EtcdLeaseTTL.String()}, nil
}

func (c *Cluster) managerAddrs() string {
	var a []string
	for _, m := range c.Managers {
		a = append(a, m.Addr())
	}
	return strings.Join(a, ",")
}

// start runs bin with n.Args on n's host, appending to n.Log.
func (c *Cluster) start(ctx context.Context, n *Node, bin string) error {
	if err := os.MkdirAll(filepath.Dir(n.Log), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := n.Host.Command(context.WithoutCancel(ctx), bin, append(n.Args, "--log-level", "debug")...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// HOME is the node's own dir: a bootstrapping manager installs the CLI
	// bundle into ~/.berth, which must not be the user's.
	cmd.Env = append(os.Environ(), "HOME="+n.DataDir)
	p, err := n.Host.Start(cmd)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.proc = p
	n.mu.Unlock()
	return nil
}

// Kill9 kills n's process with SIGKILL (its containers keep running).
func (c *Cluster) Kill9(n *Node) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	return n.Host.Kill9(p)
}

// Signal sends sig to n's process alone, not its group (an agent's
// containers stay untouched): SIGSTOP pauses the node, SIGCONT resumes it.
func (c *Cluster) Signal(n *Node, sig syscall.Signal) error {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return fmt.Errorf("signal %s: %s was never started", sig, n.Name)
	}
	if err := syscall.Kill(p.PID(), sig); err != nil {
		return fmt.Errorf("signal %s to %s (pid %d): %w", sig, n.Name, p.PID(), err)
	}
	return nil
}

// Exited reports whether n's process has exited (a node that stopped on
// its own, or was killed and not restarted).
func (c *Cluster) Exited(n *Node) bool {
	n.mu.Lock()
	p := n.proc
	n.mu.Unlock()
	if p == nil {
		return true
	}
	_, done := p.Exited()
	return done
}

// Restart starts n again with only its data dir (and, for agents, the
// manager addresses): a restarted node needs no token.
func (c *Cluster) Restart(ctx context.Context, n *Node) error {
	if err := c.Kill9(n); err != nil {
		return err
	}
	bin := c.opts.Bins.Manager
	if strings.HasPrefix(n.Name, "a") {
		bin = c.opts.Bins.Agent
	}
	return c.start(ctx, n, bin)
}

// CLI runs `berth ARGS...` against the first manager and returns its
// standard output; an error carries its standard error.
func (c *Cluster) CLI(ctx context.Context, args ...string) (string, error) {
	return c.CLIOn(ctx, c.Managers[0], args...)
}

// CLIOn runs the CLI against manager m with m's client bundle.
func (c *Cluster) CLIOn(ctx context.Context, m *Node, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, c.opts.Bins.CLI, args...)
	cmd.Env = append(os.Environ(), "BERTH_TLS_DIR="+filepath.Join(m.DataDir, "client"), "BERTH_HOST="+m.Addr())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("berth %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// waitCLI waits until the CLI works against manager m.
func (c *Cluster) waitCLI(ctx context.Context, m *Node) error {
	return c.poll(ctx, 60*time.Second, "manager "+m.Name+" serving the CLI", func() error {
		_, err := c.CLIOn(ctx, m, "cluster", "info")
		return err
	})
}

// WaitNodes waits until n nodes are ready.
func (c *Cluster) WaitNodes(ctx context.Context, n int) error {
	return c.poll(ctx, 90*time.Second, fmt.Sprintf("%d nodes ready", n), func() error {
		nodes, err := c.Nodes(ctx)
		if err != nil {
			return err
		}
		ready := 0
		for _, nd := range nodes {
			if nd.Status == "ready" {
				ready++
			}
		}
		if ready < n {
			return fmt.Errorf("%d of %d nodes ready", ready, n)
		}
		return nil
	})
}

// poll calls f until it returns nil or the timeout passes.
func (c *Cluster) poll(ctx context.Context, timeout time.Duration, what string, f func() error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Close stops every process, removes the agents' containers and mounts,
// and removes the registry and the hosts.
func (c *Cluster) Close() error {
	var errs []error
	for _, n := range append(append([]*Node{}, c.Agents...), c.Managers...) {
		errs = append(errs, c.Kill9(n))
	}
	for _, a := range c.Agents {
		errs = append(errs, CleanupAgent(a.DataDir))
	}
	if c.cgroups != "" {
		errs = append(errs, RemoveCgroups(c.cgroups))
	}
	if c.Hosts != nil {
		errs = append(errs, c.Hosts.Close())
	}
	if c.Images != nil {
		errs = append(errs, c.Images.Close())
	}
	if c.Etcd != nil {
		errs = append(errs, c.Etcd.Stop())
	}
	return errors.Join(errs...)
}

// PID is the host PID of n's process (0 when it is not running).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.proc == nil {
		return 0
	}
	return n.proc.PID()
}
