// Command berth-agent runs a worker node: it joins the cluster and runs the
// tasks assigned to it. It carries every container's init (berth-init) inside
// and writes it to its data dir.
package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"berth/agent"
	"berth/agent/promote"
	"berth/agent/runtime/initproc"
	"berth/internal/flagparse"
	"berth/internal/logging"
	"berth/internal/version"
)

// options are berth-agent's flags.
type options struct {
	dataDir       string
	join          []string
	token         string
	advertiseAddr string
	overlay       bool
	resolvConf    string
	labels        []string
	insecureRegs  []string
	gossipPort    int
	hostname      string
	managerListen string
	layers        layerLimits
	metricsAddr   string
	cgroupParent  string
	log           logging.Flags
}

func main() {
	// Built without the dedicated init (see agent/runtime/initbin), this
	// binary is every container's init: when re-executed as one, it must
	// do nothing else.
	if initproc.IsInit() {
		initproc.Main()
	}
	if err := newCmd().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "berth-agent:", err)
		os.Exit(1)
	}
}

func newCmd() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "berth-agent",
		Short: "Run a berth worker node",
		Long: `berth-agent joins a berth cluster with a worker join token and runs the
tasks the managers assign to it in native containers. Promoted with
` + "`berth node promote`" + `, it also runs a manager (on --manager-listen-addr)
that joins the Raft cluster; demoted, it stops that manager and runs on.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.Version,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.validate(); err != nil {
				return err
			}
			log, err := o.log.New(os.Stderr)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			log.Info("starting", "version", version.Version, "data_dir", o.dataDir, "managers", o.join)
			return runDaemon(ctx, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/berth/agent", "directory for images, containers, volumes and the node identity")
	f.StringSliceVar(&o.join, "join", nil, "manager addresses HOST:PORT to join (comma-separated or repeated)")
	f.StringVar(&o.token, "token", "", "worker join `TOKEN`, from 'berth cluster join-token worker'")
	f.StringVar(&o.advertiseAddr, "advertise-addr", "", "IP other nodes reach this node on")
	f.BoolVar(&o.overlay, "overlay", true, "build overlay networks (VXLAN, nftables) in this network namespace; false gives containers loopback only")
	f.StringVar(&o.resolvConf, "resolv-conf", "/etc/resolv.conf", "resolv.conf whose nameservers get the names berth's DNS server does not answer, and whose search and options lines containers get")
	f.StringArrayVar(&o.labels, "label", nil, "node label key=value (repeatable)")
	f.StringSliceVar(&o.insecureRegs, "insecure-registry", nil, "plain-HTTP registry HOST:PORT (repeatable)")
	f.StringVar(&o.hostname, "hostname", "", "node name to report (default: the host's name)")
	f.IntVar(&o.gossipPort, "gossip-port", agent.DefaultGossipPort, "port for gossip failure detection (TCP and UDP)")
	f.StringVar(&o.managerListen, "manager-listen-addr", "", "`HOST:PORT` the node's manager listens on once 'berth node promote' makes it one (default: ADVERTISE_ADDR:"+promote.DefaultManagerPort+")")
	f.StringVar(&o.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics and Go's /debug/pprof/ on `HOST:PORT` (default: off)")
	f.StringVar(&o.cgroupParent, "cgroup-parent", "/berth", flagparse.CgroupParentHelp)
	o.layers.register(f)
	o.log.Register(f)
	cmd.AddCommand(runCommands()...)
	return cmd
}

// validate checks the flags before anything starts, naming the flag and the fix.
func (o *options) validate() error {
	if o.dataDir == "" {
		return errors.New("--data-dir must not be empty")
	}
	if len(o.join) == 0 {
		return errors.New("--join is required: give a manager address, e.g. --join 10.0.0.1:4242")
	}
	for _, m := range o.join {
		if _, _, err := net.SplitHostPort(m); err != nil {
			return fmt.Errorf("--join %q: want HOST:PORT, e.g. 10.0.0.1:4242", m)
		}
	}
	if o.gossipPort < 0 || o.gossipPort > 65535 {
		return fmt.Errorf("--gossip-port %d: want a port number 0-65535", o.gossipPort)
	}
	if o.advertiseAddr != "" && net.ParseIP(o.advertiseAddr) == nil {
		return fmt.Errorf("--advertise-addr %q: want an IP address", o.advertiseAddr)
	}
	if o.managerListen != "" {
		if _, _, err := net.SplitHostPort(o.managerListen); err != nil {
			return fmt.Errorf("--manager-listen-addr %q: want HOST:PORT, e.g. 10.0.0.5:4242", o.managerListen)
		}
	}
	for _, l := range o.labels {
		if k, _, ok := strings.Cut(l, "="); !ok || k == "" {
			return fmt.Errorf("--label %q: want key=value", l)
		}
	}
	if err := flagparse.CgroupParent(o.cgroupParent); err != nil {
		return err
	}
	_, _, err := o.layers.config()
	return err
}
