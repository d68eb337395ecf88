package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// IsInit reports whether this process was started as a container init:
// berth-init always is; a binary that embeds the init as a fallback (the
// agent built without the dedicated init) calls it first thing in main.
func IsInit() bool {
	return len(os.Args) > 0 && os.Args[0] == initconf.Arg0
}

// Main runs the container init: it prepares the container from the
// config sent by the agent, starts the user process and stays as PID 1,
// forwarding signals, reaping zombies and serving exec requests. It never
// returns; it exits with the user process's status.
func Main() {
	// Every container process is forked from this thread, which alone
	// carries the dropped capabilities and no_new_privs.
	goruntime.LockOSThread()
	goruntime.GOMAXPROCS(1)
	debug.SetGCPercent(25)
	os.Exit(runInit())
}

func runInit() int {
	if err := closeInherited(); err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: %v\n", err)
		return 125
	}
	// Handlers first: PID 1 ignores signals it has no handler for, and Go's
	// default for SIGTERM would end the init rather than forward it.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, append(forwarded, unix.SIGCHLD)...)
	sync := os.NewFile(initconf.FdSync, "sync")
	cfg, sent, err := readConfig()
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: %v\n", err)
		return 125
	}
	in, err := prepare(cfg, sent, sigs)
	reply := initconf.Reply{}
	if err != nil {
		reply.Error, reply.Kind = err.Error(), initconf.KindOf(err)
	} else {
		reply.Pid = in.userPid
	}
	if werr := json.NewEncoder(sync).Encode(reply); werr != nil && err == nil {
		// The agent is gone before it learnt of us: carry on, it adopts.
		fmt.Fprintf(os.Stderr, "berth-init: report start: %v\n", werr)
	}
	sync.Close()
	if err != nil {
		return 125
	}
	return in.loop()
}

// prepare builds the container around the init and starts the user
// process. Everything that can fail for a user-visible reason fails here.
// It builds the filesystem while the agent moves the init into the
// container's cgroup, and waits for the agent's word (awaitGo) before it
// joins the payload cgroup and forks anything.
func prepare(cfg *initconf.Config, sent sentFiles, sigs chan os.Signal) (*initState, error) {
	s := cfg
	exec := os.NewFile(uintptr(sent.exec), "exec")
	defer exec.Close()
	var stdin *os.File
	if sent.stdin >= 0 {
		stdin = os.NewFile(uintptr(sent.stdin), "stdin")
		defer stdin.Close()
	}
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("prctl dumpable: %w", err)
	}
	if err := setupRootfs(cfg, sent.rootfs, sent.binds); err != nil {
		return nil, err
	}
	if s.Hostname != "" {
		if err := unix.Sethostname([]byte(s.Hostname)); err != nil {
			return nil, fmt.Errorf("set hostname %q: %w", s.Hostname, err)
		}
	}
	if !s.HostNetwork {
		if err := loopbackUp(); err != nil {
			return nil, err
		}
	}
	in := &initState{
		dir:     os.NewFile(initconf.FdStateDir, "state"),
		logDir:  os.NewFile(initconf.FdLogDir, "logs"),
		cfg:     s,
		sigs:    sigs,
		execs:   map[int]*execConn{},
		execReq: make(chan *execConn),
		execCtl: make(chan execSignal),
	}
	if err := in.startLogging(stdin); err != nil {
		return nil, err
	}
	if err := awaitGo(); err != nil {
		return nil, err
	}
	if err := joinPayload(sent.payload); err != nil {
		return nil, err
	}
	if err := limitProcess(s.Rlimits, s.Caps); err != nil {
		return nil, err
	}
	if err := installSeccomp(cfg.Seccomp); err != nil { // after no_new_privs, on the forking thread
		return nil, err
	}
	up := s.Process
	p, err := in.spawn(processSpec{Args: up.Args, Env: up.Env, Cwd: up.Cwd, User: up.User, TTY: up.TTY}, in.stdio)
	for _, f := range in.stdio {
		f.Close()
	}
	if err != nil {
		return nil, err
	}
	in.userPid = p
	in.serveExec(exec)
	return in, nil
}

// limitProcess sets rlimits, no_new_privs and the capability set; all are
// inherited by the processes the init forks from its locked thread.
func limitProcess(limits []initconf.Rlimit, caps []uint) error {
	for _, l := range limits {
		if err := syscall.Setrlimit(l.Resource, &syscall.Rlimit{Cur: l.Soft, Max: l.Hard}); err != nil {
			return fmt.Errorf("rlimit %s=%d:%d: %w", l.Name, l.Soft, l.Hard, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	return dropCapabilities(caps)
}

// joinPayload moves the init's locked thread, which forks every container
// process, into the payload cgroup (when the agent made one and sent its
// threads file) and gives it a cgroup namespace rooted there: the
// container's processes are born in the group that counts them against
// the pids limit, the init's other threads are not, and /proc/self/cgroup
// shows "/" inside.
func joinPayload(fd int) error {
	if fd >= 0 {
		_, err := unix.Write(fd, []byte("0"))
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join payload cgroup: %w", err)
		}
	}
	if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
		return fmt.Errorf("cgroup namespace: %w", err)
	}
	return nil
}

// loopbackUp brings lo up in the container's new network namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// processSpec is a process to start inside the container (the user
// process or an exec'd one).
type processSpec struct {
	Args      []string
	Env       []string
	Cwd, User string
	TTY       bool
}

// spawn starts p with stdio files (one pty slave, or stdin, stdout,
// stderr) and returns its pid in the container.
func (in *initState) spawn(p processSpec, stdio []*os.File) (int, error) {
	u, err := lookupUser(p.User)
	if err != nil {
		return 0, err
	}
	env := containerEnv(in.cfg.Env, p.Env, u, p.TTY)
	path, err := lookPath(p.Args[0], env)
	if err != nil {
		return 0, err
	}
	leave, err := enterCwd(p.Cwd)
	if err != nil {
		return 0, err
	}
	defer leave()
	if err := markCloexec(); err != nil {
		return 0, err
	}
	files := stdio
	if len(stdio) == 1 {
		files = []*os.File{stdio[0], stdio[0], stdio[0]}
	}
	unix.Umask(0o022)
	// No Dir: the child inherits the directory enterCwd opened, rather
	// than resolving a path again after the fork.
	proc, err := os.StartProcess(path, p.Args, &os.ProcAttr{
		Env: env, Files: files,
		Sys: &syscall.SysProcAttr{
			Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups},
			Setsid:     true,
			Setctty:    p.TTY,
		},
	})
	if err != nil {
		return 0, startError(p.Args[0], err)
	}
	pid := proc.Pid
	_ = proc.Release() // the init reaps with wait4 itself
	return pid, nil
}

// enterCwd makes the init's working directory dir (the container's root
// when empty), resolved and created inside the container's root, so that
// the next process started inherits it; leave goes back to the root. A
// path through a descriptor link such as /proc/self/fd/N is refused.
func enterCwd(dir string) (leave func(), err error) {
	if dir == "" {
		dir = "/"
	}
	root, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root: %w", err)
	}
	defer unix.Close(root)
	fd, err := mkdirInRoot(root, dir)
	if err == nil {
		err = unix.Fchdir(fd)
		unix.Close(fd)
	}
	switch {
	case errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV):
		return nil, fmt.Errorf("%w: working directory %s: not a directory inside the container (a /proc descriptor link or a symlink loop)", initconf.ErrInvalidSpec, dir)
	case err != nil:
		return nil, fmt.Errorf("working directory %s: %w", dir, initconf.DiskError(err))
	}
	return func() { _ = unix.Chdir("/") }, nil
}

func startError(cmd string, err error) error {
	switch {
	case strings.Contains(err.Error(), "permission denied"):
		return fmt.Errorf("run %s: %w (%v)", cmd, initconf.ErrPermissionDenied, err)
	case strings.Contains(err.Error(), "no such file"):
		return fmt.Errorf("%w: run %s: %v (a missing interpreter or library?)", initconf.ErrCommandNotFound, cmd, err)
	}
	return fmt.Errorf("run %s: %w", cmd, initconf.DiskError(err))
}

// containerEnv is the user's environment with Docker's defaults: PATH,
// HOSTNAME, HOME and, with a terminal, TERM.
func containerEnv(base, extra []string, u execUser, tty bool) []string {
	env := append(append([]string{}, base...), extra...)
	has := func(k string) bool {
		for _, e := range env {
			if strings.HasPrefix(e, k+"=") {
				return true
			}
		}
		return false
	}
	host, _ := os.Hostname()
	defaults := [][2]string{{"PATH", initconf.DefaultPath}, {"HOSTNAME", host}, {"HOME", u.Home}}
	if tty {
		defaults = append(defaults, [2]string{"TERM", "xterm"})
	}
	for _, d := range defaults {
		if !has(d[0]) {
			env = append(env, d[0]+"="+d[1])
		}
	}
	return env
}

// forwarded are the signals the init passes on to the user process.
var forwarded = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGTERM,
	unix.SIGWINCH, unix.SIGALRM, unix.SIGCONT, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU,
	unix.SIGPWR,
}
