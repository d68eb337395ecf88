// Command berth-manager runs a manager: a Raft member, the API server and,
// while it leads, the control loops.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"berth/agent"
	"berth/agent/runtime/initproc"
	"berth/ca"
	"berth/manager"
	"berth/manager/telemetry"

	"berth/internal/flagparse"
	"berth/internal/logging"
	"berth/internal/metrics"
	"berth/internal/version"
)

// options are berth-manager's flags.
type options struct {
	dataDir         string
	listenAddr      string
	advertiseAddr   string
	join            []string
	token           string
	dev             bool
	forceNewCluster bool
	insecureRegs    []string
	addrPool        string
	addrPoolMaskLen int
	metricsAddr     string
	cgroupParent    string
	overlay         bool
	overlaySet      bool // --overlay given
	store           string
	etcd            etcdFlags
	log             logging.Flags
}

func main() {
	// With --dev this binary runs containers; built without the dedicated
	// init (see agent/runtime/initbin), it is also their init.
	if initproc.IsInit() {
		initproc.Main()
	}
	if err := newCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "berth-manager:", err)
		os.Exit(1)
	}
}

func newCmd() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "berth-manager",
		Short: "Run a berth manager (Raft member, API server, control loops)",
		Long: `berth-manager runs one manager of a berth cluster.

With an empty --data-dir it bootstraps a new one-manager cluster; with --join
and a manager join token it joins an existing one; restarted with the same
--data-dir it rejoins with no other flags. --dev runs a one-node cluster with
an embedded agent. The cluster state is replicated with the embedded Raft, or
kept in etcd with --store etcd --etcd-endpoints URL,... (every manager of the
cluster gets the same --etcd-* flags).`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.overlaySet = cmd.Flags().Changed("overlay")
			if err := o.validate(); err != nil {
				return err
			}
			log, err := o.log.New(os.Stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log.Info("starting", "version", version.Version, "data_dir", o.dataDir, "listen", o.listenAddr)
			return run(ctx, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/berth/manager", "directory for Raft state, certificates and keys")
	f.StringVar(&o.listenAddr, "listen-addr", "0.0.0.0:4242", "address the manager listens on (HOST:PORT)")
	f.StringVar(&o.advertiseAddr, "advertise-addr", "", "address other nodes reach this manager on (default: the listen address)")
	f.StringSliceVar(&o.join, "join", nil, "address of a manager of the cluster to join (repeatable)")
	f.StringVar(&o.token, "token", "", "manager join `TOKEN`, from 'berth cluster join-token manager'")
	f.BoolVar(&o.dev, "dev", false, "run a one-node cluster with an embedded agent")
	f.BoolVar(&o.forceNewCluster, "force-new-cluster", false, "recover a one-manager cluster from this manager's data, keeping the state")
	f.StringSliceVar(&o.insecureRegs, "insecure-registry", nil, "plain-HTTP registry HOST:PORT, handed to every agent (repeatable)")
	f.StringVar(&o.addrPool, "default-addr-pool", "", "address pool network subnets are carved from, when this manager creates the cluster (default 10.0.0.0/8)")
	f.IntVar(&o.addrPoolMaskLen, "default-addr-pool-mask-len", 0, "prefix length of the subnets carved from the pool (default 24)")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and Go's /debug/pprof/ on `HOST:PORT` (default: off)")
	f.StringVar(&o.cgroupParent, "cgroup-parent", "", "with --dev: the embedded agent's "+flagparse.CgroupParentHelp+" (default /berth)")
	f.BoolVar(&o.overlay, "overlay", true, "with --dev: the embedded agent builds overlay networks (VXLAN, nftables) in this network namespace, as berth-agent does; false gives containers loopback only and refuses published ports")
	f.StringVar(&o.store, "store", "raft", "where the cluster state lives: `raft` (embedded, replicated among the managers) or etcd (--etcd-endpoints)")
	o.etcd.register(f)
	o.log.Register(f)
	return cmd
}

// validate checks the flags before anything starts, naming the flag and the fix.
func (o *options) validate() error {
	if o.dataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if _, _, err := net.SplitHostPort(o.listenAddr); err != nil {
		return fmt.Errorf("--listen-addr %q: want HOST:PORT, e.g. 127.0.0.1:4242", o.listenAddr)
	}
	if o.advertiseAddr != "" {
		if _, _, err := net.SplitHostPort(o.advertiseAddr); err != nil {
			return fmt.Errorf("--advertise-addr %q: want HOST:PORT, e.g. 10.0.0.5:4242", o.advertiseAddr)
		}
	}
	if o.cgroupParent != "" && !o.dev {
		return errors.New("--cgroup-parent is for the agent --dev embeds; give it to berth-agent on other nodes")
	}
	if o.overlaySet && !o.dev {
		return errors.New("--overlay is for the agent --dev embeds; give it to berth-agent on other nodes")
	}
	if err := flagparse.CgroupParent(o.cgroupParent); err != nil {
		return err
	}
	if o.dev && len(o.join) > 0 {
		return errors.New("--dev and --join exclude each other: --dev makes a one-node cluster of its own")
	}
	if len(o.join) > 0 && o.token == "" {
		return errors.New("--join needs --token: get one with `berth cluster join-token manager` on a manager")
	}
	if (o.addrPool != "" || o.addrPoolMaskLen != 0) && len(o.join) > 0 {
		return errors.New("--default-addr-pool and --join exclude each other: the pool is chosen when a cluster is created")
	}
	if o.forceNewCluster && len(o.join) > 0 {
		return errors.New("--force-new-cluster and --join exclude each other: recover first, then let others join")
	}
	if err := o.etcd.validate(o.store, o.forceNewCluster); err != nil {
		return err
	}
	for _, r := range o.insecureRegs {
		if _, _, err := net.SplitHostPort(r); err != nil {
			return fmt.Errorf("--insecure-registry %q: want HOST:PORT", r)
		}
	}
	return nil
}

// run starts the manager (and with --dev an agent in the same process)
// and blocks until ctx ends.
func run(ctx context.Context, o *options, log *slog.Logger) error {
	home, _ := os.UserHomeDir()
	dataDir := o.dataDir
	if o.dev {
		dataDir = filepath.Join(o.dataDir, "manager")
	}
	cfg := manager.Config{
		DataDir: dataDir, ListenAddr: o.listenAddr, AdvertiseAddr: o.advertiseAddr,
		Join: o.join, Token: o.token, ForceNewCluster: o.forceNewCluster,
		InsecureRegistries: o.insecureRegs, Logger: log,
		AddressPool: o.addrPool, AddressPoolMaskLen: o.addrPoolMaskLen,
		Etcd: o.etcd.config(o.store),
	}
	if home != "" && len(o.join) == 0 {
		// A manager that makes a cluster sets up the CLI on its host.
		cfg.InstallClientBundle = filepath.Join(home, ".berth")
	}
	ep, err := metrics.Open(o.metricsAddr, log)
	if err != nil {
		return err
	}
	var tm *telemetry.Metrics // nil: metrics off
	if ep != nil {
		tm = telemetry.New(ep.Registry)
	}
	tm.Instrument(&cfg)
	m, err := manager.New(cfg)
	if err != nil {
		ep.Close()
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return m.Run(gctx) })
	g.Go(func() error { return ep.Run(gctx) })
	g.Go(func() error { return tm.Follow(gctx, m) })
	if o.dev {
		g.Go(func() error { return runDevAgent(gctx, m, o, ep, log) })
	}
	err = g.Wait()
	log.Info("stopped")
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// runDevAgent runs the embedded agent of --dev: it joins its own manager
// with the worker token, as any agent would.
func runDevAgent(ctx context.Context, m *manager.Manager, o *options, ep *metrics.Endpoint, log *slog.Logger) error {
	select {
	case <-m.Ready():
	case <-ctx.Done():
		return nil
	}
	token, err := m.JoinToken(ctx, ca.RoleWorker)
	if err != nil {
		return nil
	}
	dir, err := filepath.Abs(filepath.Join(o.dataDir, "agent"))
	if err != nil {
		return err
	}
	a, err := agent.New(agent.Config{
		DataDir: dir, Join: []string{m.AdvertiseAddr()}, Token: token,
		InsecureRegistries: o.insecureRegs, CgroupParent: o.cgroupParent, Logger: log.With("part", "agent"), Metrics: ep.Registerer(),
		// As berth-agent's: the default network, DNS on its gateway and
		// published ports, on the host's address (agent.hostAddr).
		Overlay: o.overlay,
	})
	if err != nil {
		return fmt.Errorf("--dev agent: %w", err)
	}
	return a.Run(ctx)
}
