package initproc

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// serveExec accepts exec requests on the listener the agent created in the
// state directory and hands them to the main loop, which forks from the
// thread that carries the container's capabilities.
func (in *initState) serveExec(lf *os.File) {
	l, err := net.FileListener(lf)
	lf.Close()
	if err != nil {
		fmt.Fprintf(os.Stderr, "berth-init: exec listener: %v\n", err)
		return
	}
	go func() {
		for {
			c, err := l.(*net.UnixListener).AcceptUnix()
			if err != nil {
				return
			}
			ec, err := readExecRequest(c)
			if err != nil {
				_ = json.NewEncoder(c).Encode(initconf.ExecMessage{Error: err.Error()})
				c.Close()
				continue
			}
			in.execReq <- ec
		}
	}()
}

// readExecRequest reads the request and the stdio descriptors sent with it.
func readExecRequest(c *net.UnixConn) (*execConn, error) {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(3*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("read exec request: %w", err)
	}
	ec := &execConn{conn: c}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("exec request descriptors: %w", err)
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			return nil, fmt.Errorf("exec request descriptors: %w", err)
		}
		for _, fd := range fds {
			ec.files = append(ec.files, os.NewFile(uintptr(fd), "exec-stdio"))
		}
	}
	if err := json.Unmarshal(buf[:n], &ec.req); err != nil {
		closeAll(ec.files)
		return nil, fmt.Errorf("decode exec request: %w", err)
	}
	if len(ec.req.Args) == 0 || (!ec.req.TTY && len(ec.files) != 3) || (ec.req.TTY && len(ec.files) != 0) {
		closeAll(ec.files)
		return nil, fmt.Errorf("exec request needs args and 3 descriptors, or none with a tty")
	}
	return ec, nil
}

// startExec forks the requested process; it runs on the main loop. With a
// TTY the init opens the pseudo-terminal in the container's devpts and
// sends the master back with its reply.
func (in *initState) startExec(ec *execConn) {
	r := ec.req
	var master *os.File
	var err error
	if r.TTY {
		var slave *os.File
		if master, slave, err = openPty("/dev/ptmx"); err == nil {
			ec.files = []*os.File{slave}
			defer master.Close()
			if r.Rows > 0 && r.Cols > 0 {
				_ = unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: r.Rows, Col: r.Cols})
			}
		}
	}
	pid := 0
	if err == nil {
		pid, err = in.spawn(processSpec{Args: r.Args, Env: r.Env, Cwd: r.Cwd, User: r.User, TTY: r.TTY}, ec.files)
	}
	closeAll(ec.files)
	if err != nil {
		_ = json.NewEncoder(ec.conn).Encode(initconf.ExecMessage{Error: err.Error(), Kind: initconf.KindOf(err)})
		ec.conn.Close()
		return
	}
	ec.pid = pid
	in.execs[pid] = ec
	reply, _ := json.Marshal(initconf.ExecMessage{Pid: pid})
	var oob []byte
	if master != nil {
		oob = unix.UnixRights(int(master.Fd()))
	}
	_, _, _ = ec.conn.WriteMsgUnix(append(reply, '\n'), oob, nil)
	go in.readExecSignals(ec)
}

// readExecSignals relays the client's signal requests; a client that goes
// away before its process ends takes the process with it.
func (in *initState) readExecSignals(ec *execConn) {
	dec := json.NewDecoder(ec.conn)
	for {
		var m initconf.ExecMessage
		if err := dec.Decode(&m); err != nil {
			in.execCtl <- execSignal{pid: ec.pid, sig: unix.SIGKILL}
			return
		}
		if m.Signal > 0 {
			in.execCtl <- execSignal{pid: ec.pid, sig: unix.Signal(m.Signal)}
		}
	}
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
