package runtime

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/cgroups"
	"berth/agent/runtime/initconf"
)

// setupTimeout bounds a container's setup when ctx has no deadline, so a
// wedged init can never hang the agent.
const setupTimeout = 30 * time.Second

// Run creates and starts a container and returns once its user process
// runs. On any failure nothing is left behind (no process, cgroup, mount
// or state directory) and the error says what to fix: errors.Is matches
// ErrCommandNotFound, ErrPermissionDenied, ErrNoSpace, ErrInvalidSpec or
// ErrExists.
func (r *Runtime) Run(ctx context.Context, spec Spec) (*Container, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if fi, err := os.Stat(spec.Rootfs); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("%w: rootfs %s is not a directory", ErrInvalidSpec, spec.Rootfs)
	}
	r.mu.Lock()
	if _, ok := r.containers[spec.ID]; ok || r.closed {
		r.mu.Unlock()
		return nil, fmt.Errorf("run %s: %w", spec.ID, ErrExists)
	}
	rec := &record{ID: spec.ID, Spec: spec, CreatedAt: time.Now().UTC()}
	c := newContainer(r, rec)
	r.containers[spec.ID] = c // reserve the ID
	r.mu.Unlock()

	if err := c.start(ctx); err != nil {
		c.abort()
		r.forget(spec.ID)
		return nil, fmt.Errorf("run %s: %w", spec.ID, diskError(err))
	}
	go c.watch()
	return c, nil
}

// start does the work of Run; abort undoes whatever it got done.
//
// The init is started first: while its runtime comes up (most of a
// millisecond), the agent makes the cgroup and the exec socket and sends
// their descriptors with the config. While the init builds the
// container's filesystem, the agent moves it into the cgroup (on cgroup
// v1 the first move after a pause waits out an RCU grace period, often
// 5-15 ms) and runs PreStart (the task's network); then it tells the init
// to go on. The init forks nothing before that word, so every container
// process is born in the cgroup, with its network in place.
func (c *Container) start(ctx context.Context) error {
	s := &c.rec.Spec
	filter, err := c.rt.seccompFilter(s)
	if err != nil {
		return err
	}
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return ErrExists
		}
		return fmt.Errorf("create state dir: %w", err)
	}
	c.madeDir = true
	// A log dir already there is from a container of this ID lost in a
	// reboot: its logs go on.
	if err := os.Mkdir(c.logs, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create log dir: %w", err)
	}
	mounts, err := c.rt.resolveMounts(s.Mounts)
	if err != nil {
		return err
	}
	dirf, err := os.Open(c.dir)
	if err != nil {
		return fmt.Errorf("open state dir: %w", err)
	}
	defer dirf.Close()
	logf, err := os.Open(c.logs)
	if err != nil {
		return fmt.Errorf("open log dir: %w", err)
	}
	defer logf.Close()
	conn, err := c.spawnInit(dirf, logf)
	if err != nil {
		return err
	}
	defer conn.Close()
	sent, err := c.makeCgroup(dirf)
	if err != nil {
		return err
	}
	defer closeAll(sent)
	payload := len(sent) > 1
	if s.Stdin != nil {
		sent = append(sent[:len(sent):len(sent)], s.Stdin) // the caller's to close
	}
	stop := c.bound(ctx, conn)
	defer stop()
	cfg := initConfig(s, mounts, filter, payload)
	if err := c.sendConfig(conn, &cfg, sent); err != nil {
		return err
	}
	if err := c.rec.Cgroup.Join(c.rec.Pid); err != nil {
		return err
	}
	if s.PreStart != nil {
		if err := s.PreStart(ctx, c.rec.Pid); err != nil {
			return fmt.Errorf("pre-start: %w", err)
		}
	}
	if err := c.awaitStart(ctx, conn); err != nil {
		return err
	}
	return c.rec.save(c.dir)
}

// makeCgroup makes the container's cgroup and opens what the init gets
// with its config: the exec socket and, when there is a payload cgroup,
// its threads file.
func (c *Container) makeCgroup(dirf *os.File) (sent []*os.File, err error) {
	cg, err := c.rt.cg.Create(c.rt.cfg.CgroupParent, c.id)
	if err != nil {
		return nil, err
	}
	c.rec.Cgroup = cg
	if err := cg.Set(cgroupResources(c.rec.Spec.Resources)); err != nil {
		return nil, fmt.Errorf("set limits: %w", err)
	}
	listener, err := listenExec(dirf)
	if err != nil {
		return nil, err
	}
	sent = []*os.File{listener}
	if name := cg.PayloadThreadsFile(); name != "" {
		// The agent opens it: the kernel checks the opener's rights, and
		// a user-namespaced init has none on the host's cgroup files.
		f, err := os.OpenFile(name, os.O_WRONLY, 0)
		if err != nil {
			listener.Close()
			return nil, fmt.Errorf("open payload cgroup: %w", err)
		}
		sent = append(sent, f)
	}
	return sent, nil
}

// spawnInit starts the init binary (Config.InitPath) in new
// namespaces with the state directory dirf and the log directory logf,
// and returns the agent's end of the sync socket.
func (c *Container) spawnInit(dirf, logf *os.File) (*net.UnixConn, error) {
	s := &c.rec.Spec
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync-init")
	defer ours.Close()
	defer theirs.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	initLog, err := os.OpenFile(filepath.Join(c.dir, "init.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create init log: %w", err)
	}
	defer initLog.Close()
	attr := &syscall.SysProcAttr{Cloneflags: cloneFlags(s), Setsid: true}
	if s.UserNS {
		base := int(c.rt.cfg.UserNSBase)
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}}
		attr.GidMappingsEnableSetgroups = true
		// Become root of the new namespace (host uid base), not an
		// unmapped host root.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
		for _, d := range []string{c.dir, c.logs} {
			if err := os.Chown(d, base, base); err != nil {
				return nil, fmt.Errorf("hand %s to the user namespace: %w", d, err)
			}
		}
		_ = os.Chown(initLog.Name(), base, base)
	}
	// The init starts in the host's root, not in the agent's working
	// directory, and moves into the container's root when it pivots.
	proc, err := os.StartProcess(c.rt.cfg.InitPath, []string{initconf.Arg0, c.id}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []*os.File{null, initLog, initLog, theirs, dirf, logf},
		Sys:   attr,
	})
	if err != nil {
		return nil, fmt.Errorf("start container init %s: %w", c.rt.cfg.InitPath, err)
	}
	c.proc = proc
	c.rec.Pid = proc.Pid
	if c.pidfd, err = unix.PidfdOpen(proc.Pid, unix.PIDFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("pidfd of init: %w", err)
	}
	if c.rec.StartTime, err = procStartTime(proc.Pid); err != nil {
		return nil, fmt.Errorf("start time of init: %w", err)
	}
	fc, err := net.FileConn(ours)
	if err != nil {
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	return fc.(*net.UnixConn), nil
}

func cloneFlags(s *Spec) uintptr {
	f := uintptr(unix.CLONE_NEWPID | unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC)
	if !s.HostNetwork {
		f |= unix.CLONE_NEWNET
	}
	if s.UserNS {
		f |= unix.CLONE_NEWUSER
	}
	return f
}

// listenExec creates the exec socket in the state directory; the path goes
// through /proc/self/fd so that long data dirs fit a sockaddr.
func listenExec(dir *os.File) (*os.File, error) {
	path := fmt.Sprintf("/proc/self/fd/%d/exec.sock", dir.Fd())
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	l.SetUnlinkOnClose(false)
	defer l.Close()
	f, err := l.File()
	if err != nil {
		return nil, fmt.Errorf("exec socket: %w", err)
	}
	return f, nil
}

// bound limits the talk with the init to ctx's deadline (setupTimeout
// when it has none) and cuts it short when ctx ends.
func (c *Container) bound(ctx context.Context, conn *net.UnixConn) (stop func() bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(setupTimeout)
	}
	_ = conn.SetDeadline(deadline)
	return context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
}

// sendConfig sends the config frame with the descriptors sent.
func (c *Container) sendConfig(conn *net.UnixConn, cfg *initconf.Config, sent []*os.File) error {
	frame, err := initconf.EncodeConfig(cfg)
	if err != nil {
		return err
	}
	fds := make([]int, len(sent))
	for i, f := range sent {
		fds[i] = int(f.Fd())
	}
	n, _, err := conn.WriteMsgUnix(frame, unix.UnixRights(fds...), nil)
	if err == nil && n < len(frame) {
		_, err = conn.Write(frame[n:])
	}
	if err != nil {
		return fmt.Errorf("send config to init: %w%s", err, c.initLogTail())
	}
	return nil
}

// awaitStart tells the init to go on (initconf.Go) and waits for it to
// report the user process running, or its setup error, or its death.
func (c *Container) awaitStart(ctx context.Context, conn *net.UnixConn) error {
	// A failed write is an init that already failed or died: its reply,
	// or the end of the stream, says which.
	_, _ = conn.Write([]byte{initconf.Go})
	var reply initconf.Reply
	if err := json.NewDecoder(conn).Decode(&reply); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("container setup: %w", ctx.Err())
		}
		return fmt.Errorf("%w: init ended before the container started: %v%s", ErrSetup, err, c.initLogTail())
	}
	if reply.Error != "" {
		return remoteError(reply.Error, reply.Kind)
	}
	return nil
}

func (c *Container) initLogTail() string {
	data, _ := os.ReadFile(filepath.Join(c.dir, "init.log"))
	s := strings.TrimSpace(string(data))
	if len(s) > 500 {
		s = s[len(s)-500:]
	}
	if s == "" {
		return ""
	}
	return " (init: " + s + ")"
}

// abort tears down a container whose start failed.
func (c *Container) abort() {
	if c.proc != nil {
		_ = c.proc.Kill()
		_, _ = c.proc.Wait()
	}
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
	if cg := c.rec.Cgroup; cg != nil {
		if err := errors.Join(cg.Kill(), cg.Remove()); err != nil {
			c.rt.log.Warn("clean up cgroup of failed container", "container", c.id, "err", err)
		}
	}
	if !c.madeDir {
		return // a container of that ID is there, not ours to remove
	}
	if err := errors.Join(os.RemoveAll(c.logs), os.RemoveAll(c.dir)); err != nil {
		c.rt.log.Warn("clean up state of failed container", "container", c.id, "err", err)
	}
}

// resolveMounts turns volume names into host directories (creating them)
// and checks bind sources.
func (r *Runtime) resolveMounts(ms []Mount) ([]Mount, error) {
	out := make([]Mount, len(ms))
	for i, m := range ms {
		switch m.Type {
		case MountVolume:
			dir := r.VolumeDir(m.Source)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return nil, fmt.Errorf("volume %s: %w", m.Source, err)
			}
			m.Source = dir
		case MountBind:
			if _, err := os.Stat(m.Source); err != nil {
				return nil, fmt.Errorf("%w: bind mount source %s: %v", ErrInvalidSpec, m.Source, err)
			}
		}
		out[i] = m
	}
	return out, nil
}

// payloadThreads is what the runtime adds to the container's processes in
// its payload cgroup: the one init thread that forks them (joinPayload).
const payloadThreads = 1

// cgroupResources converts the spec's limits for package cgroups.
func cgroupResources(r Resources) cgroups.Resources {
	out := cgroups.Resources{MemoryBytes: r.MemoryBytes, CPUShares: r.CPUShares}
	if r.PidsLimit > 0 {
		out.PidsLimit = r.PidsLimit + payloadThreads
	}
	if r.NanoCPUs > 0 {
		out.CPUPeriod = 100000
		out.CPUQuota = r.NanoCPUs * 100000 / 1e9
	}
	return out
}
