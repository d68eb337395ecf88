package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent"
	"berth/agent/image"
	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// session is one foreground or detached berth-agent run: the container,
// its stdin, terminal and published ports.
type session struct {
	o              *runOptions
	log            *slog.Logger
	stdin          io.Reader
	stdout, stderr io.Writer
	rt             *runtime.Runtime
	c              *runtime.Container
	fwd            *agent.PortForwarder // nil without -p
	net            *netRun              // nil without --network
	stdinW         *os.File             // our end of the container's stdin (-i)
	restoreTerm    func()               // puts our terminal back (-it on a terminal)
	removeRootfs   func()
}

// create makes the container's rootfs from img (ephemeral with --rm) and
// starts it; on failure it removes the rootfs again.
func (s *session) create(ctx context.Context, images *image.Store, id string, img image.Image, p *runPlan) error {
	var prep []image.PrepareOption
	if s.o.rm {
		prep = append(prep, image.Ephemeral()) // its writes go with it
	}
	rootfs, err := images.Prepare(ctx, id, img, prep...)
	if err != nil {
		return err
	}
	s.removeRootfs = func() {
		if err := images.Remove(context.WithoutCancel(ctx), id); err != nil {
			s.log.Warn("remove rootfs", "container", id, "err", err)
		}
	}
	rs, err := agent.RuntimeSpec(id, rootfs, img.Config, p.spec, p.limits)
	if err == nil {
		rs.HostNetwork = s.o.hostNet
		rs.StopGrace = s.o.stopGrace
		if s.net != nil {
			rs.Mounts = append(rs.Mounts, s.net.mount())
			rs.PreStart = s.net.preStart
		}
		err = s.start(ctx, rs)
	}
	if err != nil {
		s.removeRootfs()
		if s.net != nil {
			removeNetFiles(s.o.dataDir, id)
			if s.net.refused != nil {
				return s.net.refused // as the managers said it, not wrapped in the runtime's words
			}
			s.net.detach(ctx) // attached, then the start failed
		}
	}
	return err
}

// start runs the container with -i's pipe and -t's terminal size, and
// starts forwarding -p's ports into it.
func (s *session) start(ctx context.Context, rs runtime.Spec) error {
	if f, ok := s.stdin.(*os.File); ok && s.o.tty {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil {
			rs.Rows, rs.Cols = ws.Row, ws.Col
		}
	}
	if s.o.interactive {
		r, w, err := os.Pipe()
		if err != nil {
			return fmt.Errorf("stdin pipe: %w", err)
		}
		defer r.Close() // the container has its own copy once Run returns
		rs.Stdin, s.stdinW = r, w
	}
	c, err := s.rt.Run(ctx, rs)
	if err != nil {
		if s.stdinW != nil {
			s.stdinW.Close()
		}
		return err
	}
	s.c = c
	if s.fwd != nil {
		if err := s.fwd.Serve(ctx, c.NetnsPath()); err != nil {
			_, _ = c.Stop(context.WithoutCancel(ctx), time.Second)
			_ = c.Delete(context.WithoutCancel(ctx))
			if s.net != nil {
				s.net.detach(ctx)
			}
			return err
		}
	}
	return nil
}

// attach streams the container's output until it exits, passing stdin
// with -i and stopping it on SIGINT/SIGTERM (on a terminal with -it, ^C
// goes to the container instead, as with docker run -it), and returns its
// exit code.
func (s *session) attach(ctx context.Context) (int, error) {
	c := s.c
	logCtx, stopLogs := context.WithCancel(ctx)
	logsDone := make(chan error, 1)
	go func() { logsDone <- s.rt.Logs(logCtx, c.ID(), true, s.stdout) }()
	if s.stdinW != nil {
		s.passStdin()
	}
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
		fmt.Fprintf(s.stderr, "stopping %s (grace %s)\n", c.ID(), s.o.stopGrace)
		st, _ = c.Stop(context.WithoutCancel(ctx), s.o.stopGrace)
	}
	// Let the follower drain what the container wrote last.
	time.AfterFunc(200*time.Millisecond, stopLogs)
	<-logsDone
	if s.restoreTerm != nil {
		s.restoreTerm()
	}
	if st.OOMKilled {
		fmt.Fprintf(s.stderr, "container %s was killed: out of memory (limit %s)\n", c.ID(), s.o.memory)
	}
	if s.o.rm {
		if err := c.Delete(context.WithoutCancel(ctx)); err != nil {
			fmt.Fprintf(s.stderr, "remove container %s: %v\n", c.ID(), err)
		}
		s.removeRootfs()
	}
	return st.Code, nil
}

// passStdin copies our stdin into the container's until it ends. With -t
// on a terminal, the terminal goes raw first: keys, ^C included, reach
// the container's terminal as typed, and its echo comes back as output.
func (s *session) passStdin() {
	if f, ok := s.stdin.(*os.File); ok && s.o.tty {
		if restore, err := makeRaw(int(f.Fd())); err == nil {
			s.restoreTerm = restore
		}
	}
	w := s.stdinW
	go func() {
		defer w.Close()
		_, _ = io.Copy(w, s.stdin)
	}()
}

// makeRaw puts the terminal fd in raw mode, as cfmakeraw(3) does, and
// returns what puts it back; it fails when fd is not a terminal.
func makeRaw(fd int) (restore func(), err error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB
	t.Cflag |= unix.CS8
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// listenPorts binds -p's ports on the host before the container starts,
// so a port in use fails the run before anything runs; nil without -p.
func listenPorts(ctx context.Context, ports []*pb.PortConfig, log *slog.Logger, stderr io.Writer, quiet bool) (*agent.PortForwarder, error) {
	if len(ports) == 0 {
		return nil, nil
	}
	f, err := agent.ListenPorts(ctx, ports, log)
	if err != nil {
		return nil, fmt.Errorf("--publish: %w", err)
	}
	if !quiet {
		for _, p := range f.Ports() {
			proto := "tcp"
			if p.GetProtocol() == pb.PortConfig_PROTOCOL_UDP {
				proto = "udp"
			}
			fmt.Fprintf(stderr, "publishing port %d/%s of the host (all addresses) to the container's %d\n", p.GetPublishedPort(), proto, p.GetTargetPort())
		}
	}
	return f, nil
}
