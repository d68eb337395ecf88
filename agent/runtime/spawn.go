package runtime

import (
	"fmt"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// initProc is a container init the agent started, before it knows its
// container or not, and the agent's end of its sync socket.
type initProc struct {
	proc      *os.Process
	pidfd     int
	startTime uint64 // /proc/PID/stat's, against PID reuse
	conn      *net.UnixConn
}

// initAttr is how an init for s is started: its namespaces and, with a
// user namespace, its id mappings.
func (r *Runtime) initAttr(s *Spec) *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{Cloneflags: cloneFlags(s), Setsid: true}
	if s.UserNS {
		base := int(r.cfg.UserNSBase)
		attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}}
		attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: base, Size: 65536}}
		attr.GidMappingsEnableSetgroups = true
		// Become root of the new namespace (host uid base), not an
		// unmapped host root.
		attr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	return attr
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

// spawnInit starts the init binary (Config.InitPath) with attr. It gets
// the sync socket (initconf.FdSync) and /dev/null as stdio only: its
// state and log directories and its own log come with its config, so
// that it can start before its container is known (a spare).
func (r *Runtime) spawnInit(attr *syscall.SysProcAttr) (*initProc, error) {
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
	// The init starts in the host's root, not in the agent's working
	// directory, and moves into the container's root when it pivots.
	proc, err := os.StartProcess(r.cfg.InitPath, []string{initconf.Arg0}, &os.ProcAttr{
		Dir:   "/",
		Env:   []string{},
		Files: []*os.File{null, null, null, theirs},
		Sys:   attr,
	})
	if err != nil {
		return nil, fmt.Errorf("start container init %s: %w", r.cfg.InitPath, err)
	}
	p := &initProc{proc: proc, pidfd: -1}
	if err := p.open(ours); err != nil {
		p.kill()
		return nil, err
	}
	return p, nil
}

// open takes hold of a started init: its pidfd, start time and socket.
func (p *initProc) open(sock *os.File) error {
	var err error
	if p.pidfd, err = unix.PidfdOpen(p.proc.Pid, unix.PIDFD_NONBLOCK); err != nil {
		p.pidfd = -1
		return fmt.Errorf("pidfd of init: %w", err)
	}
	if p.startTime, err = procStartTime(p.proc.Pid); err != nil {
		return fmt.Errorf("start time of init: %w", err)
	}
	fc, err := net.FileConn(sock)
	if err != nil {
		return fmt.Errorf("sync socket: %w", err)
	}
	p.conn = fc.(*net.UnixConn)
	return nil
}

// kill ends an init that has no container and reaps it.
func (p *initProc) kill() {
	_ = p.proc.Kill()
	_, _ = p.proc.Wait()
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
	}
	if p.conn != nil {
		p.conn.Close()
	}
}
