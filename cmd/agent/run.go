package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"berth/agent"
	"berth/agent/image"
	"berth/agent/runtime"
	"berth/internal/flagparse"
	"berth/internal/logging"
	pb "berth/proto/berth/v1"
)

// runUsage is the command line of `berth-agent run`, as docker run's.
const runUsage = "berth-agent run [OPTIONS] IMAGE [COMMAND [ARG...]]"

// runOptions are the flags of `berth-agent run`.
type runOptions struct {
	dataDir, imageRef, name, memory, user, workdir, hostname string
	pull, cgroupParent                                       string
	cpus                                                     float64
	pids                                                     int64
	env, mounts, insecure, securityOpts, publish, labels     []string
	nets, aliases                                            []string
	rm, readOnly, hostNet, quiet, detach, interactive, tty   bool
	stopGrace                                                time.Duration
	layers                                                   layerLimits
	log                                                      logging.Flags
}

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run [OPTIONS] IMAGE [COMMAND [ARG...]]",
		Short: "Run one container, like docker run",
		Long: `run pulls an image unless it is here already (--pull; progress on stderr),
runs one container with native isolation, streams its output and exits with
its exit code. Ctrl-C stops the container (SIGTERM, then SIGKILL after
--stop-timeout). Options go before IMAGE; what follows IMAGE is the command.

With -d the container runs on after run returns, which prints its ID:
see it with berth-agent ps and logs, end it with stop and rm.`,
		Example: `  berth-agent run --rm 127.0.0.1:5000/busybox echo hello
  berth-agent run -it --rm 127.0.0.1:5000/busybox sh
  berth-agent run --rm -p 8080:80 127.0.0.1:5000/nginx
  berth-agent run -d --name web 127.0.0.1:5000/nginx; berth-agent logs web; berth-agent rm -f web
  berth-agent run --rm --network shared --network-alias dbg 127.0.0.1:5000/busybox nslookup web  # on a cluster node`,
		DisableFlagsInUseLine: true,
		SilenceUsage:          true,
		SilenceErrors:         true,
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := o.run(cmd.Context(), args, cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "berth-agent:", err)
				code = max(code, 125)
			}
			os.Exit(code)
			return nil
		},
	}
	f := cmd.Flags()
	// Flags stop at IMAGE: the command's own flags (sh -c) are its.
	f.SetInterspersed(false)
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/berth/agent", "directory for images, containers and volumes")
	f.StringVar(&o.imageRef, "image", "", "gone: give the image as the first argument")
	_ = f.MarkHidden("image")
	f.StringVar(&o.pull, "pull", "missing", "when to pull the image: missing (only when not here), always, never")
	f.StringVar(&o.name, "name", "", "container name, also its ID (default: random)")
	f.BoolVarP(&o.detach, "detach", "d", false, "run in the background and print the container's ID")
	f.BoolVarP(&o.interactive, "interactive", "i", false, "pass stdin to the container")
	f.BoolVarP(&o.tty, "tty", "t", false, "give the container a terminal")
	f.StringArrayVarP(&o.publish, "publish", "p", nil, "publish a container port on the host's addresses, HOST:CONTAINER[/tcp|udp] (repeatable)")
	f.StringVarP(&o.memory, "memory", "m", "", "memory limit, e.g. 64M")
	f.Float64Var(&o.cpus, "cpus", 0, "CPU limit, e.g. 0.5")
	f.Int64Var(&o.pids, "pids-limit", 0, "maximum number of processes")
	f.StringArrayVarP(&o.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringArrayVarP(&o.labels, "label", "l", nil, "container label KEY=VALUE, shown by ps and inspect (repeatable)")
	f.StringArrayVar(&o.mounts, "mount", nil, "type=bind|volume|tmpfs,source=S,target=T[,readonly] (repeatable)")
	f.StringSliceVar(&o.insecure, "insecure-registry", nil, "plain-HTTP registry HOST:PORT (repeatable)")
	f.StringVarP(&o.user, "user", "u", "", "user[:group] to run as")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory")
	f.StringVar(&o.hostname, "hostname", "", "container hostname")
	f.BoolVar(&o.rm, "rm", false, "remove the container and its rootfs when it exits")
	f.BoolVar(&o.readOnly, "read-only", false, "mount the root filesystem read-only")
	f.BoolVar(&o.hostNet, "network-host", false, "share the host's network namespace")
	f.StringArrayVar(&o.nets, "network", nil, "join an attachable overlay network `NAME|ID` through the node's berth-agent daemon (repeatable; see berth network create --attachable)")
	f.StringArrayVar(&o.aliases, "network-alias", nil, "another name the container has on its --network networks (repeatable)")
	f.StringVar(&o.cgroupParent, "cgroup-parent", "/berth", flagparse.CgroupParentHelp)
	f.StringArrayVar(&o.securityOpts, "security-opt", nil, "seccomp=unconfined|builtin|FILE: the syscall filter (default: Docker's profile)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no pull progress")
	f.DurationVar(&o.stopGrace, "stop-timeout", 10*time.Second, "grace period between SIGTERM and SIGKILL")
	o.layers.register(f)
	o.log = logging.Flags{Level: "warn"}
	o.log.Register(f)
	return cmd
}

// runArgs splits IMAGE [COMMAND [ARG...]]; a "--" before the command is
// allowed.
func (o *runOptions) runArgs(args []string) (ref string, command []string, err error) {
	if o.imageRef != "" {
		return "", nil, fmt.Errorf("--image is gone: give the image as the first argument, as with docker run: %s", runUsage)
	}
	if len(args) == 0 {
		return "", nil, fmt.Errorf("an image is required: %s", runUsage)
	}
	command = args[1:]
	if len(command) > 0 && command[0] == "--" {
		command = command[1:]
	}
	return args[0], command, nil
}

// checkModes refuses the flag combinations that cannot work, before
// anything is pulled or started.
func (o *runOptions) checkModes() error {
	if err := flagparse.CgroupParent(o.cgroupParent); err != nil {
		return err
	}
	switch {
	case o.name != "" && !runtime.ValidID(o.name):
		return fmt.Errorf("--name %q: use 1-128 letters, digits, '_', '.' or '-', starting with a letter or digit", o.name)
	case o.detach && o.rm:
		return errors.New("--rm with -d: nothing stays to remove the container when it exits; remove it with `berth-agent rm ID` once it has")
	case o.detach && o.interactive:
		return errors.New("-i with -d: a detached container has no one to read stdin from; use -i in the foreground, or run something that waits without it (sleep infinity)")
	case o.detach && len(o.publish) > 0:
		return errors.New("-p with -d: published ports are forwarded by the foreground berth-agent run and would close with it; run in the foreground, or publish from a service (berth service create -p)")
	case o.hostNet && len(o.publish) > 0:
		return errors.New("-p with --network-host: the container already listens on the host's own ports")
	case o.hostNet && len(o.nets) > 0:
		return errors.New("--network with --network-host: a container sharing the host's network namespace cannot join overlay networks; give one of them")
	case len(o.aliases) > 0 && len(o.nets) == 0:
		return errors.New("--network-alias without --network: an alias is a name on the container's networks; add --network NAME")
	}
	for _, n := range o.nets {
		if strings.TrimSpace(n) == "" {
			return errors.New(`--network "": give a network's name or ID`)
		}
	}
	for _, a := range o.aliases {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, " \t/") {
			return fmt.Errorf("--network-alias %q: give a DNS name (letters, digits, '-', '.')", a)
		}
	}
	return nil
}

// ports parses -p into the ports to forward.
func (o *runOptions) ports() ([]*pb.PortConfig, error) {
	var out []*pb.PortConfig
	for _, s := range o.publish {
		if strings.Contains(s, "=") || strings.Count(s, ":") > 1 {
			return nil, fmt.Errorf("--publish %q: berth-agent run takes HOST:CONTAINER[/tcp|udp] and publishes on all the host's addresses", s)
		}
		p, err := flagparse.Port(s)
		if err != nil {
			return nil, err
		}
		p.PublishMode = pb.PortConfig_PUBLISH_MODE_HOST // exclusive, as a one-off run's
		out = append(out, p)
	}
	return out, nil
}

// runPlan is what run's flags and arguments ask for, checked before
// anything is pulled or started.
type runPlan struct {
	ref    string
	spec   *pb.ContainerSpec
	limits *pb.ResourceSet
	policy image.PullPolicy
	ports  []*pb.PortConfig
}

func (o *runOptions) plan(args []string) (*runPlan, error) {
	ref, command, err := o.runArgs(args)
	if err != nil {
		return nil, err
	}
	if err := o.checkModes(); err != nil {
		return nil, err
	}
	p := &runPlan{ref: ref}
	if p.ports, err = o.ports(); err != nil {
		return nil, err
	}
	if p.spec, err = o.containerSpec(ref, command); err != nil {
		return nil, err
	}
	if p.limits, err = o.limits(); err != nil {
		return nil, err
	}
	if p.policy, err = image.ParsePullPolicy(o.pull); err != nil {
		return nil, fmt.Errorf("--pull: %w", err)
	}
	return p, nil
}

func (o *runOptions) run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	p, err := o.plan(args)
	if err != nil {
		return 0, err
	}
	log, err := o.log.New(stderr)
	if err != nil {
		return 0, err
	}
	var daemon *grpc.ClientConn
	if len(o.nets) > 0 { // refused before anything is pulled
		if daemon, err = dialDaemon(o.dataDir); err != nil {
			return 0, err
		}
		defer daemon.Close()
	}
	images, rt, err := o.open(log)
	if err != nil {
		return 0, err
	}
	defer images.Close()
	defer rt.Close()
	img, err := images.Get(ctx, p.ref, p.policy, newProgressPrinter(stderr, o.quiet).update)
	if err != nil {
		return 0, pullHint(err, p.ref, p.policy)
	}
	id := o.name
	if id == "" {
		id = randomID()
	}
	if rt.Taken(id) { // before Prepare, which would hand back its rootfs
		return 125, nameHint(runtime.ErrExists, id)
	}
	s := &session{o: o, log: log, stdin: stdin, stdout: stdout, stderr: stderr, rt: rt}
	if s.fwd, err = listenPorts(ctx, p.ports, log, stderr, o.quiet); err != nil {
		return 0, err
	}
	if s.fwd != nil {
		defer s.fwd.Close()
	}
	if daemon != nil {
		if s.net, err = newNetRun(daemon, o.dataDir, id, o.networks(), stderr); err != nil {
			return 0, err
		}
	}
	if err := s.create(ctx, images, id, img, p); err != nil {
		return exitCodeFor(err), nameHint(err, id)
	}
	if o.detach {
		fmt.Fprintln(stdout, id)
		return 0, nil
	}
	code, err := s.attach(ctx)
	if s.net != nil {
		s.net.detach(ctx)
		if o.rm {
			removeNetFiles(o.dataDir, id)
		}
	}
	return code, err
}

// open opens the image store and the runtime of berth-agent run.
func (o *runOptions) open(log *slog.Logger) (*image.Store, *runtime.Runtime, error) {
	maxSize, maxEntries, err := o.layers.config()
	if err != nil {
		return nil, nil, err
	}
	return openStores(o.dataDir, image.Config{Insecure: o.insecure, MaxLayerSize: maxSize, MaxLayerEntries: maxEntries}, o.cgroupParent, log)
}

// runDir holds the containers of berth-agent run under the data dir,
// apart from the node daemon's ("runtime"), which would adopt them and
// remove them as not assigned to it.
const runDir = agent.RunDir

// openStores opens the image store (cfg completed with its root and
// logger) and the runtime of berth-agent run's containers under dataDir,
// which puts new ones under cgroupParent ("" for the default).
func openStores(dataDir string, cfg image.Config, cgroupParent string, log *slog.Logger) (*image.Store, *runtime.Runtime, error) {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, nil, err
	}
	cfg.Root, cfg.Logger = filepath.Join(dataDir, "images"), log
	images, err := image.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	rt, err := runtime.New(runtime.Config{DataDir: filepath.Join(dataDir, runDir), CgroupParent: cgroupParent, Logger: log})
	if err != nil {
		images.Close()
		return nil, nil, err
	}
	return images, rt, nil
}

func (o *runOptions) containerSpec(ref string, args []string) (*pb.ContainerSpec, error) {
	c := &pb.ContainerSpec{Image: ref, Args: args, Env: o.env, User: o.user, Workdir: o.workdir, Hostname: o.hostname, ReadOnly: o.readOnly, Tty: o.tty}
	if len(args) > 0 {
		c.Command, c.Args = args, nil
	}
	for _, m := range o.mounts {
		pm, err := flagparse.Mount(m)
		if err != nil {
			return nil, err
		}
		c.Mounts = append(c.Mounts, pm)
	}
	opts, err := flagparse.SecurityOpts(o.securityOpts)
	if err != nil {
		return nil, err
	}
	c.SecurityOpts = opts
	if c.Labels, err = flagparse.Labels("label", o.labels); err != nil {
		return nil, err
	}
	return c, nil
}

func (o *runOptions) limits() (*pb.ResourceSet, error) {
	mem, err := flagparse.Bytes("memory", o.memory)
	if err != nil {
		return nil, err
	}
	return &pb.ResourceSet{NanoCpus: int64(o.cpus * 1e9), Pids: o.pids, MemoryBytes: mem}, nil
}

// pullHint adds to a failed image look-up what --pull did and what else
// to try; a registry that answered HTTPS with plain HTTP gets the flag
// that speaks HTTP to it.
func pullHint(err error, ref string, policy image.PullPolicy) error {
	var rec tls.RecordHeaderError
	if errors.As(err, &rec) || strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") ||
		strings.Contains(err.Error(), "first record does not look like a TLS handshake") {
		reg := "HOST:PORT"
		if r, perr := name.ParseReference(ref); perr == nil {
			reg = r.Context().RegistryStr()
		}
		return fmt.Errorf("%w (the registry speaks plain HTTP: if you trust it, add --insecure-registry %s)", err, reg)
	}
	switch {
	case policy == image.PullNever && errors.Is(err, image.ErrNotFound):
		return fmt.Errorf("%w (--pull never: pull it first, or use --pull missing)", err)
	case policy == image.PullAlways && errors.Is(err, image.ErrUnreachable):
		return fmt.Errorf("%w (--pull always; --pull missing runs an image already here)", err)
	}
	return err
}

// nameHint says how to free a name that is taken.
func nameHint(err error, id string) error {
	if errors.Is(err, runtime.ErrExists) {
		return fmt.Errorf("%w: the name %s is taken; remove that container with `berth-agent rm %s`, or pick another --name", err, id, id)
	}
	return err
}

// exitCodeFor follows docker run: 127 for a command not found, 126 for one
// that cannot be run, 125 for anything else that kept the container from starting.
func exitCodeFor(err error) int {
	switch {
	case errors.Is(err, runtime.ErrCommandNotFound):
		return 127
	case errors.Is(err, runtime.ErrPermissionDenied):
		return 126
	default:
		return 125
	}
}

func randomID() string {
	b := make([]byte, 6)
	rand.Read(b)
	return hex.EncodeToString(b)
}
