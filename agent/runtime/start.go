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

	err := c.start(ctx)
	if r.spares != nil {
		r.spares.refill() // for the next start, now that this one is done
	}
	if err != nil {
		c.abort()
		r.forget(spec.ID)
		return nil, fmt.Errorf("run %s: %w", spec.ID, diskError(err))
	}
	go c.watch()
	return c, nil
}

// start does the work of Run; abort undoes whatever it got done.
//
// The init is the spare one (spare.go) or, when there is none, started
// first: while its runtime comes up (most of a millisecond), the agent
// makes the directories, the cgroup and the exec socket and sends their
// descriptors with the config. While the init builds the
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
	p, err := c.rt.startInit(s)
	if err != nil {
		return err
	}
	c.proc, c.pidfd, c.rec.Pid, c.rec.StartTime = p.proc, p.pidfd, p.proc.Pid, p.startTime
	conn := p.conn
	defer conn.Close()
	dirs, err := c.makeDirs()
	if err != nil {
		return err
	}
	defer closeAll(dirs)
	mounts, err := c.rt.resolveMounts(s.Mounts)
	if err != nil {
		return err
	}
	trees, err := openTrees(s.Rootfs, mounts)
	if err != nil {
		return err
	}
	defer closeAll(trees)
	sent, err := c.makeCgroup(dirs[0])
	if err != nil {
		return err
	}
	defer closeAll(sent)
	payload := len(sent) > 1
	// In initconf's order: directories and init log, exec socket, mount
	// trees, payload cgroup, stdin.
	files := append(dirs[:len(dirs):len(dirs)], sent[0])
	files = append(append(files, trees...), sent[1:]...)
	if s.Stdin != nil {
		files = append(files, s.Stdin) // the caller's to close
	}
	stop := c.bound(ctx, conn)
	defer stop()
	cfg := initConfig(s, mounts, filter, payload)
	if err := c.sendConfig(conn, &cfg, files); err != nil {
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

// startInit takes the spare init when s can, else starts one.
func (r *Runtime) startInit(s *Spec) (*initProc, error) {
	if r.spares != nil && spareable(s) {
		if p := r.spares.take(); p != nil {
			return p, nil
		}
	}
	return r.spawnInit(r.initAttr(s))
}

// makeDirs creates the container's state and log directories and the
// init's log, and opens them for the init, in initconf's order.
func (c *Container) makeDirs() ([]*os.File, error) {
	if err := os.Mkdir(c.dir, 0o700); err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, ErrExists
		}
		return nil, fmt.Errorf("create state dir: %w", err)
	}
	c.madeDir = true
	// A log dir already there is from a container of this ID lost in a
	// reboot: its logs go on.
	if err := os.Mkdir(c.logs, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	var files []*os.File
	for _, d := range []string{c.dir, c.logs} {
		f, err := os.Open(d)
		if err != nil {
			closeAll(files)
			return nil, fmt.Errorf("open %s: %w", d, err)
		}
		files = append(files, f)
	}
	initLog, err := os.OpenFile(filepath.Join(c.dir, "init.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		closeAll(files)
		return nil, fmt.Errorf("create init log: %w", err)
	}
	files = append(files, initLog)
	if c.rec.Spec.UserNS {
		// The init, root of its user namespace, creates files in them.
		base := int(c.rt.cfg.UserNSBase)
		for _, f := range files {
			if err := f.Chown(base, base); err != nil {
				closeAll(files)
				return nil, fmt.Errorf("hand %s to the user namespace: %w", f.Name(), err)
			}
		}
	}
	return files, nil
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
