package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// initState is the init's view of its container while it runs.
type initState struct {
	cfg     *initconf.Config
	dir     *os.File   // state directory on the host (a tmpfs)
	logDir  *os.File   // log directory on the host (on disk)
	stdio   []*os.File // the user process's ends of the log pipe or pty
	logDone chan struct{}
	sigs    chan os.Signal
	userPid int
	user    *initconf.ExitStatus
	execs   map[int]*execConn
	execReq chan *execConn
	execCtl chan execSignal
}

// execConn is one exec request in flight.
type execConn struct {
	conn  *net.UnixConn
	req   initconf.ExecRequest
	files []*os.File
	pid   int
}

// execSignal asks the main loop to signal an exec'd process.
type execSignal struct {
	pid int
	sig unix.Signal
}

// startLogging connects the user process's output to the rotated log,
// through a pipe or, with a TTY, a pseudo-terminal. stdin, when the
// agent sent one, is the process's input (copied into the terminal with
// a TTY); else it reads /dev/null.
func (in *initState) startLogging(stdin *os.File) error {
	rot, err := newRotator(int(in.logDir.Fd()), in.cfg.LogMaxBytes, in.cfg.LogMaxFiles)
	if err != nil {
		return initconf.DiskError(err)
	}
	if in.cfg.Process.TTY {
		m, s, err := openPty("/dev/ptmx")
		if err != nil {
			return err
		}
		in.stdio = []*os.File{s}
		if p := in.cfg.Process; p.Rows > 0 && p.Cols > 0 {
			_ = unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: p.Rows, Col: p.Cols})
		}
		if stdin != nil {
			in.copyInput(m, stdin)
		}
		sink := newLogSink(rot, 1)
		in.logDone = sink.done
		go copyLog(sink, streamStdout, m)
		return nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("log pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("log pipe: %w", err)
	}
	if stdin == nil {
		if stdin, err = os.Open("/dev/null"); err != nil {
			return fmt.Errorf("open /dev/null: %w", err)
		}
	} else if stdin, err = dupFile(stdin); err != nil {
		return err
	}
	in.stdio = []*os.File{stdin, outW, errW}
	sink := newLogSink(rot, 2)
	in.logDone = sink.done
	go copyLog(sink, streamStdout, outR)
	go copyLog(sink, streamStderr, errR)
	return nil
}

// loop is PID 1's life: forward signals, reap children, start exec'd
// processes, until the user process exits.
func (in *initState) loop() int {
	for in.user == nil {
		select {
		case sig := <-in.sigs:
			if sig == unix.SIGCHLD {
				in.reap(unix.WNOHANG)
			} else {
				_ = unix.Kill(in.userPid, sig.(unix.Signal))
			}
		case ec := <-in.execReq:
			in.startExec(ec)
		case es := <-in.execCtl:
			if _, ok := in.execs[es.pid]; ok {
				_ = unix.Kill(es.pid, es.sig)
			}
		}
	}
	return in.finish()
}

// reap collects exited children; flags is WNOHANG or 0 (block until none
// is left).
func (in *initState) reap(flags int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, flags, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		st := initconf.StatusOf(syscall.WaitStatus(ws))
		if pid == in.userPid {
			in.user = &st
		}
		if ec, ok := in.execs[pid]; ok {
			delete(in.execs, pid)
			code := st.Code
			_ = json.NewEncoder(ec.conn).Encode(initconf.ExecMessage{Exit: &code})
			ec.conn.Close()
		}
	}
}

// finish ends the container once the user process has exited: kill what
// is left in the PID namespace, drain the log and record the exit status.
func (in *initState) finish() int {
	_ = unix.Kill(-1, unix.SIGKILL)
	in.reap(0)
	select {
	case <-in.logDone:
	case <-time.After(5 * time.Second): // a writer escaped the namespace's death
	}
	data, _ := json.Marshal(in.user)
	// Written in place, not renamed into place: it is read only once the
	// init is gone, and one torn by the init's death mid-write does not
	// parse, so the agent falls back to the wait status. A rename is one
	// more journaled metadata change on every container's way out.
	fd, err := unix.Openat(int(in.dir.Fd()), initconf.ExitFile, unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err == nil {
		_, err = unix.Write(fd, data)
		unix.Close(fd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: record exit status: %v\n", err)
	}
	return in.user.Code & 0xff
}
