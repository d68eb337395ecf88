package runtime

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/cgroups"
	"berth/agent/runtime/initconf"
)

// Stats is a container's resource usage, read from its cgroup.
type Stats = cgroups.Stats

// Container is one container on this node, running or exited.
type Container struct {
	rt   *Runtime
	id   string
	dir  string // state, on the tmpfs
	logs string // logs, on disk
	done chan struct{}

	mu    sync.Mutex
	rec   *record
	pidfd int // -1 when none
	// madeDir: start created the state directory, so abort may remove
	// it (not when it belonged to another container of that ID).
	madeDir bool
	proc    *os.Process // nil when adopted: the init is not our child
}

func newContainer(r *Runtime, rec *record) *Container {
	return &Container{rt: r, id: rec.ID, dir: r.containerDir(rec.ID), logs: r.logDir(rec.ID), done: make(chan struct{}), rec: rec, pidfd: -1}
}

// ID is the container's ID.
func (c *Container) ID() string { return c.id }

// Spec is the spec the container was started with.
func (c *Container) Spec() Spec { return c.rec.Spec }

// Pid is the host PID of the container's init.
func (c *Container) Pid() int { return c.rec.Pid }

// LogPath is the current log file; rotated ones carry .1, .2, … suffixes.
func (c *Container) LogPath() string { return filepath.Join(c.logs, logName) }

// NetnsPath is the network namespace for overlay/ to wire, or "" for a
// container on the host network or one that has exited.
func (c *Container) NetnsPath() string {
	if c.rec.Spec.HostNetwork || !c.Running() {
		return ""
	}
	return fmt.Sprintf("/proc/%d/ns/net", c.rec.Pid)
}

// Running reports whether the container has not exited yet.
func (c *Container) Running() bool {
	select {
	case <-c.done:
		return false
	default:
		return true
	}
}

// Exited returns the exit status once the container has ended.
func (c *Container) Exited() (ExitStatus, bool) {
	if c.Running() {
		return ExitStatus{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.rec.Exit, true
}

// Wait blocks until the container exits or ctx ends.
func (c *Container) Wait(ctx context.Context) (ExitStatus, error) {
	select {
	case <-c.done:
		st, _ := c.Exited()
		return st, nil
	case <-ctx.Done():
		return ExitStatus{}, fmt.Errorf("wait for %s: %w", c.id, ctx.Err())
	}
}

// Kill sends sig to the init, which forwards it to the user process;
// SIGKILL ends the whole container at once.
func (c *Container) Kill(sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.Running() || c.pidfd < 0 {
		return fmt.Errorf("signal %s: %w", c.id, ErrNotRunning)
	}
	if sig == syscall.SIGKILL && !c.rec.Killed {
		c.rec.Killed = true
		_ = c.rec.save(c.dir)
	}
	if err := unix.PidfdSendSignal(c.pidfd, sig, nil, 0); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("signal %s: %w", c.id, ErrNotRunning)
		}
		return fmt.Errorf("signal %s with %v: %w", c.id, sig, err)
	}
	return nil
}

// Stop sends the spec's stop signal (SIGTERM by default), waits up to grace
// (the spec's StopGrace when zero) and then kills the container.
func (c *Container) Stop(ctx context.Context, grace time.Duration) (ExitStatus, error) {
	if grace <= 0 {
		grace = c.rec.Spec.stopGrace()
	}
	if err := c.Kill(c.rec.Spec.stopSignal()); err != nil && !errors.Is(err, ErrNotRunning) {
		return ExitStatus{}, err
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		if err := c.Kill(syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
			return ExitStatus{}, err
		}
	case <-ctx.Done():
		return ExitStatus{}, fmt.Errorf("stop %s: %w", c.id, ctx.Err())
	}
	return c.Wait(ctx)
}

// Stats reads the container's cgroup usage.
func (c *Container) Stats() (Stats, error) {
	if !c.Running() {
		return Stats{}, fmt.Errorf("stats of %s: %w", c.id, ErrNotRunning)
	}
	st, err := c.rec.Cgroup.Stats()
	if err != nil {
		return st, fmt.Errorf("stats of %s: %w", c.id, err)
	}
	// Report the user's processes against the user's limit: leave out the
	// init's forking thread, which sits in the payload group with them.
	if st.Pids >= payloadThreads {
		st.Pids -= payloadThreads
	}
	if st.PidsLimit > payloadThreads {
		st.PidsLimit -= payloadThreads
	}
	return st, nil
}

// Delete removes an exited container's state and logs; a running one is
// killed first. Volumes are kept.
func (c *Container) Delete(ctx context.Context) error {
	if c.Running() {
		if err := c.Kill(syscall.SIGKILL); err != nil && !errors.Is(err, ErrNotRunning) {
			return err
		}
		if _, err := c.Wait(ctx); err != nil {
			return err
		}
	}
	// Logs first: the state dir holds the ID until the end.
	if err := errors.Join(os.RemoveAll(c.logs), os.RemoveAll(c.dir)); err != nil {
		return fmt.Errorf("delete %s: %w", c.id, err)
	}
	c.rt.forget(c.id)
	return nil
}

// attach opens a pidfd on an adopted container's init after checking that
// the PID still names the same process.
func (c *Container) attach() error {
	fd, err := unix.PidfdOpen(c.rec.Pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("pidfd %d: %w", c.rec.Pid, err)
	}
	st, err := procStartTime(c.rec.Pid)
	if err != nil || st != c.rec.StartTime {
		unix.Close(fd)
		return fmt.Errorf("pid %d was reused", c.rec.Pid)
	}
	c.pidfd = fd
	return nil
}

// watch waits for the init to end and records the container's exit.
func (c *Container) watch() {
	var ws *syscall.WaitStatus
	if c.proc != nil {
		if ps, err := c.proc.Wait(); err == nil {
			w := ps.Sys().(syscall.WaitStatus)
			ws = &w
		}
	} else {
		waitPidfd(c.pidfd)
	}
	if c.rt.isClosed() {
		return // a detached runtime leaves the record to its successor
	}
	c.finalize(ws)
}

// waitPidfd blocks until the process behind a non-blocking pidfd exits,
// parking in the Go poller instead of holding a thread.
func waitPidfd(fd int) {
	dup, err := unix.Dup(fd)
	if err != nil {
		return
	}
	f := os.NewFile(uintptr(dup), "pidfd")
	defer f.Close()
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(p, 0)
		return n > 0
	})
}

// finalize records how the container ended and removes its cgroup.
func (c *Container) finalize(ws *syscall.WaitStatus) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := readExitFile(c.dir)
	switch {
	case st != nil:
	case c.rec.Killed:
		st = &ExitStatus{Code: 137, Signal: int(syscall.SIGKILL), Reason: ReasonKilled}
	case ws != nil:
		s := initconf.StatusOf(*ws)
		st = &s
	default:
		st = &ExitStatus{Code: -1, Reason: ReasonLost}
	}
	if st.FinishedAt.IsZero() {
		st.FinishedAt = time.Now().UTC()
	}
	if cg := c.rec.Cgroup; cg != nil {
		if n, err := cg.OOMKills(); err == nil && n > 0 {
			st.OOMKilled, st.Reason = true, ReasonOOMKilled
		}
		if err := errors.Join(cg.Kill(), cg.Remove()); err != nil {
			c.rt.log.Warn("remove container cgroup", "container", c.id, "err", err)
		}
	}
	c.rec.Exit = st
	if err := c.rec.save(c.dir); err != nil {
		c.rt.log.Warn("record container exit", "container", c.id, "err", err)
	}
	if c.pidfd >= 0 {
		unix.Close(c.pidfd)
		c.pidfd = -1
	}
	c.rt.log.Debug("container exited", "container", c.id, "code", st.Code, "reason", st.Reason)
	close(c.done)
}
