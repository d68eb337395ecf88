package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"berth/agent"
	"berth/agent/image"
	"berth/agent/runtime"
	"berth/internal/flagparse"
	"berth/internal/logging"
	pb "berth/proto/berth/v1"
)

// runOptions are the flags of `berth-agent run`.
type runOptions struct {
	dataDir, imageRef, name, memory, user, workdir, hostname string
	pull                                                     string
	cpus                                                     float64
	pids                                                     int64
	env, mounts, insecure, securityOpts                      []string
	rm, readOnly, hostNet, quiet                             bool
	stopGrace                                                time.Duration
	layers                                                   layerLimits
	log                                                      logging.Flags
}

func newRunCmd() *cobra.Command {
	o := &runOptions{}
	cmd := &cobra.Command{
		Use:   "run --image REF [OPTIONS] [-- COMMAND [ARG...]]",
		Short: "Run one container in the foreground, like docker run",
		Long: `run pulls an image unless it is here already (--pull; progress on stderr),
runs one container with native isolation, streams its output and exits with
its exit code. Ctrl-C stops the container (SIGTERM, then SIGKILL after
--stop-timeout).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			code, err := o.run(cmd.Context(), args, cmd.OutOrStdout(), cmd.ErrOrStderr())
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "berth-agent:", err)
				code = max(code, 125)
			}
			os.Exit(code)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.dataDir, "data-dir", "/var/lib/berth/agent", "directory for images, containers and volumes")
	f.StringVar(&o.imageRef, "image", "", "image reference, e.g. 127.0.0.1:5000/busybox:latest (required)")
	f.StringVar(&o.pull, "pull", "missing", "when to pull the image: missing (only when not here), always, never")
	f.StringVar(&o.name, "name", "", "container ID (default: random)")
	f.StringVarP(&o.memory, "memory", "m", "", "memory limit, e.g. 64M")
	f.Float64Var(&o.cpus, "cpus", 0, "CPU limit, e.g. 0.5")
	f.Int64Var(&o.pids, "pids-limit", 0, "maximum number of processes")
	f.StringArrayVarP(&o.env, "env", "e", nil, "environment variable KEY=VALUE (repeatable)")
	f.StringArrayVar(&o.mounts, "mount", nil, "type=bind|volume|tmpfs,source=S,target=T[,readonly] (repeatable)")
	f.StringSliceVar(&o.insecure, "insecure-registry", nil, "plain-HTTP registry HOST:PORT (repeatable)")
	f.StringVarP(&o.user, "user", "u", "", "user[:group] to run as")
	f.StringVarP(&o.workdir, "workdir", "w", "", "working directory")
	f.StringVar(&o.hostname, "hostname", "", "container hostname")
	f.BoolVar(&o.rm, "rm", false, "remove the container and its rootfs when it exits")
	f.BoolVar(&o.readOnly, "read-only", false, "mount the root filesystem read-only")
	f.BoolVar(&o.hostNet, "network-host", false, "share the host's network namespace")
	f.StringArrayVar(&o.securityOpts, "security-opt", nil, "seccomp=unconfined|builtin|FILE: the syscall filter (default: Docker's profile)")
	f.BoolVarP(&o.quiet, "quiet", "q", false, "no pull progress")
	f.DurationVar(&o.stopGrace, "stop-timeout", 10*time.Second, "grace period between SIGTERM and SIGKILL")
	o.layers.register(f)
	o.log = logging.Flags{Level: "warn"}
	o.log.Register(f)
	return cmd
}

func (o *runOptions) run(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	if o.imageRef == "" {
		return 0, errors.New("--image is required, e.g. --image 127.0.0.1:5000/busybox:latest")
	}
	log, err := o.log.New(stderr)
	if err != nil {
		return 0, err
	}
	spec, err := o.containerSpec(args)
	if err != nil {
		return 0, err
	}
	limits, err := o.limits()
	if err != nil {
		return 0, err
	}
	policy, err := image.ParsePullPolicy(o.pull)
	if err != nil {
		return 0, fmt.Errorf("--pull: %w", err)
	}
	maxSize, maxEntries, err := o.layers.config()
	if err != nil {
		return 0, err
	}
	dataDir, err := filepath.Abs(o.dataDir)
	if err != nil {
		return 0, err
	}
	images, err := image.New(image.Config{Root: filepath.Join(dataDir, "images"), Insecure: o.insecure, Logger: log,
		MaxLayerSize: maxSize, MaxLayerEntries: maxEntries})
	if err != nil {
		return 0, err
	}
	defer images.Close()
	rt, err := runtime.New(runtime.Config{DataDir: filepath.Join(dataDir, "runtime"), Logger: log})
	if err != nil {
		return 0, err
	}
	defer rt.Close()

	progress := newProgressPrinter(stderr, o.quiet)
	img, err := images.Get(ctx, o.imageRef, policy, progress.update)
	if err != nil {
		return 0, pullHint(err, policy)
	}
	id := o.name
	if id == "" {
		id = randomID()
	}
	var prep []image.PrepareOption
	if o.rm {
		prep = append(prep, image.Ephemeral()) // its writes go with it
	}
	rootfs, err := images.Prepare(ctx, id, img, prep...)
	if err != nil {
		return 0, err
	}
	removeRootfs := func() {
		if err := images.Remove(context.WithoutCancel(ctx), id); err != nil {
			log.Warn("remove rootfs", "container", id, "err", err)
		}
	}
	rs, err := agent.RuntimeSpec(id, rootfs, img.Config, spec, limits)
	if err == nil {
		rs.HostNetwork = o.hostNet
		rs.StopGrace = o.stopGrace
	}
	var c *runtime.Container
	if err == nil {
		c, err = rt.Run(ctx, rs)
	}
	if err != nil {
		removeRootfs()
		return exitCodeFor(err), err
	}
	return o.attach(ctx, rt, c, stdout, stderr, removeRootfs)
}

// attach streams the container's output until it exits, stopping it on
// SIGINT/SIGTERM, and returns its exit code.
func (o *runOptions) attach(ctx context.Context, rt *runtime.Runtime, c *runtime.Container, stdout, stderr io.Writer, removeRootfs func()) (int, error) {
	logCtx, stopLogs := context.WithCancel(ctx)
	logsDone := make(chan error, 1)
	go func() { logsDone <- rt.Logs(logCtx, c.ID(), true, stdout) }()

	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)
	exited := make(chan runtime.ExitStatus, 1)
	go func() {
		st, _ := c.Wait(context.WithoutCancel(ctx))
		exited <- st
	}()
	var st runtime.ExitStatus
	select {
	case st = <-exited:
	case <-sigs:
		fmt.Fprintf(stderr, "stopping %s (grace %s)\n", c.ID(), o.stopGrace)
		st, _ = c.Stop(context.WithoutCancel(ctx), o.stopGrace)
	}
	// Let the follower drain what the container wrote last.
	time.AfterFunc(200*time.Millisecond, stopLogs)
	<-logsDone
	if st.OOMKilled {
		fmt.Fprintf(stderr, "container %s was killed: out of memory (limit %s)\n", c.ID(), o.memory)
	}
	if o.rm {
		if err := c.Delete(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintf(stderr, "remove container %s: %v\n", c.ID(), err)
		}
		removeRootfs()
	}
	return st.Code, nil
}

func (o *runOptions) containerSpec(args []string) (*pb.ContainerSpec, error) {
	c := &pb.ContainerSpec{Image: o.imageRef, Args: args, Env: o.env, User: o.user, Workdir: o.workdir, Hostname: o.hostname, ReadOnly: o.readOnly}
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
// to try.
func pullHint(err error, policy image.PullPolicy) error {
	switch {
	case policy == image.PullNever && errors.Is(err, image.ErrNotFound):
		return fmt.Errorf("%w (--pull never: pull it first, or use --pull missing)", err)
	case policy == image.PullAlways && errors.Is(err, image.ErrUnreachable):
		return fmt.Errorf("%w (--pull always; --pull missing runs an image already here)", err)
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
