package runtime

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// ExecSpec is an extra process to run in a running container.
type ExecSpec struct {
	Args []string
	Env  []string // added to the container's environment
	Cwd  string
	User string // as Spec.User; the container's user when empty
	// TTY gives the process a terminal; Stdout then carries both streams.
	TTY    bool
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	// Size is the terminal's size at the start and Resize brings its
	// later sizes (TTY only; zero and nil leave the kernel's default).
	Size   WindowSize
	Resize <-chan WindowSize
}

// WindowSize is a terminal's size in characters.
type WindowSize struct{ Rows, Cols uint16 }

// Exec runs a process inside the container (its namespaces, cgroup,
// capabilities and rootfs) and returns its exit code. The container's init
// forks it, so the agent never joins the namespaces itself. Cancelling ctx
// kills the process.
func (c *Container) Exec(ctx context.Context, e ExecSpec) (int, error) {
	if !c.Running() {
		return -1, fmt.Errorf("exec in %s: %w", c.id, ErrNotRunning)
	}
	if len(e.Args) == 0 {
		return -1, fmt.Errorf("exec in %s: %w: args are required", c.id, ErrInvalidSpec)
	}
	if e.User == "" {
		e.User = c.rec.Spec.User
	}
	if e.Cwd == "" {
		e.Cwd = c.rec.Spec.Cwd
	}
	conn, err := dialExec(c.dir)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.id, err)
	}
	defer conn.Close()
	x, err := newExecIO(e)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.id, err)
	}
	defer x.close()
	req, _ := json.Marshal(initconf.ExecRequest{Args: e.Args, Env: e.Env, Cwd: e.Cwd, User: e.User, TTY: e.TTY, Rows: e.Size.Rows, Cols: e.Size.Cols})
	if _, _, err := conn.WriteMsgUnix(req, unix.UnixRights(x.remoteFds()...), nil); err != nil {
		return -1, fmt.Errorf("exec in %s: send request: %w", c.id, err)
	}
	x.closeRemote()
	dec, master, err := readExecReply(conn)
	if err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.id, err)
	}
	var m initconf.ExecMessage
	if err := dec.Decode(&m); err != nil {
		return -1, fmt.Errorf("exec in %s: %w", c.id, err)
	}
	if m.Error != "" {
		return -1, fmt.Errorf("exec in %s: %w", c.id, remoteError(m.Error, m.Kind))
	}
	if e.TTY {
		if master == nil {
			return -1, fmt.Errorf("exec in %s: init sent no terminal", c.id)
		}
		x.local = []*os.File{master}
		stop := followResize(master, e.Resize)
		defer stop()
	}
	x.start()
	stop := context.AfterFunc(ctx, func() { _ = json.NewEncoder(conn).Encode(initconf.ExecMessage{Signal: int(unix.SIGKILL)}) })
	defer stop()
	m = initconf.ExecMessage{}
	if err := dec.Decode(&m); err != nil || m.Exit == nil {
		return -1, fmt.Errorf("exec in %s: lost the process: %v", c.id, err)
	}
	x.wait()
	if ctx.Err() != nil {
		return *m.Exit, fmt.Errorf("exec in %s: %w", c.id, ctx.Err())
	}
	return *m.Exit, nil
}

// readExecReply reads the init's first reply, which carries the pty
// master of a TTY exec, and returns a decoder over the whole stream.
func readExecReply(conn *net.UnixConn) (*json.Decoder, *os.File, error) {
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, fmt.Errorf("read reply: %w", err)
	}
	var master *os.File
	if msgs, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil {
		for _, m := range msgs {
			if fds, err := unix.ParseUnixRights(&m); err == nil && len(fds) > 0 {
				master = os.NewFile(uintptr(fds[0]), "pty-master")
			}
		}
	}
	return json.NewDecoder(io.MultiReader(bytes.NewReader(buf[:n]), conn)), master, nil
}

func dialExec(dir string) (*net.UnixConn, error) {
	d, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	path := fmt.Sprintf("/proc/self/fd/%d/exec.sock", d.Fd())
	return net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
}

// execIO holds both ends of an exec's stdio: the remote ends go to the
// init, the local ones are copied to and from the caller's streams.
type execIO struct {
	e      ExecSpec
	remote []*os.File
	local  []*os.File // stdin writer, stdout reader, stderr reader; or the pty master
	wg     sync.WaitGroup
}

func newExecIO(e ExecSpec) (*execIO, error) {
	x := &execIO{e: e}
	if e.TTY {
		return x, nil // the init opens the terminal inside the container
	}
	for i := 0; i < 3; i++ {
		r, w, err := os.Pipe()
		if err != nil {
			x.close()
			return nil, err
		}
		if i == 0 {
			x.remote, x.local = append(x.remote, r), append(x.local, w)
		} else {
			x.remote, x.local = append(x.remote, w), append(x.local, r)
		}
	}
	return x, nil
}

func (x *execIO) remoteFds() []int {
	var fds []int
	for _, f := range x.remote {
		fds = append(fds, int(f.Fd()))
	}
	return fds
}

func (x *execIO) closeRemote() {
	closeAll(x.remote)
	x.remote = nil
}

// start copies the caller's streams; output copies are waited for.
func (x *execIO) start() {
	out := func(w io.Writer, r *os.File) {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			if w == nil {
				w = io.Discard
			}
			_, _ = io.Copy(w, r) // a pty ends with EIO once its last user is gone
		}()
	}
	in := func(w *os.File) {
		if x.e.Stdin == nil {
			if !x.e.TTY {
				w.Close()
			}
			return
		}
		go func() { // ends when Stdin ends or the pipe breaks; not waited for
			_, _ = io.Copy(w, x.e.Stdin)
			if !x.e.TTY {
				w.Close()
			}
		}()
	}
	if x.e.TTY {
		in(x.local[0])
		out(x.e.Stdout, x.local[0])
		return
	}
	in(x.local[0])
	out(x.e.Stdout, x.local[1])
	out(x.e.Stderr, x.local[2])
}

func (x *execIO) wait() { x.wg.Wait() }

func (x *execIO) close() {
	closeAll(x.remote)
	for i, f := range x.local {
		if i == 0 && !x.e.TTY && x.e.Stdin != nil {
			continue // the stdin copier closes it
		}
		f.Close()
	}
}

// closeAll closes files, ignoring errors: they are ours and done with.
func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// followResize sets the terminal's size to each new one from resize, until
// the returned stop is called (before master is closed). The init sets the
// first size before the process starts.
func followResize(master *os.File, resize <-chan WindowSize) (stop func()) {
	set := func(ws WindowSize) {
		rc, err := master.SyscallConn() // Fd() would make the master blocking
		if err != nil || ws.Rows == 0 || ws.Cols == 0 {
			return
		}
		_ = rc.Control(func(fd uintptr) {
			_ = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols})
		})
	}
	if resize == nil {
		return func() {}
	}
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case ws := <-resize:
				set(ws)
			case <-done:
				return
			}
		}
	}()
	return func() { close(done); <-exited }
}
