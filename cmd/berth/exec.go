package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// exitCode makes the CLI exit with code and print nothing more (the exit
// code of an exec'd process).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit code %d", int(e)) }

// execOpts are the flags of `exec`.
type execOpts struct {
	interactive, tty bool
	env              []string
	user, workdir    string
}

func newExecCmd(g *globalOpts) *cobra.Command {
	var o execOpts
	cmd := &cobra.Command{
		Use:   "exec [OPTIONS] TASK|SERVICE -- COMMAND [ARG...]",
		Short: "Run a command in a running task's container, on whichever node it runs",
		Long: "Run a command in a running task's container, on whichever node it runs. A service\n" +
			"means its running task of the lowest slot. The command's exit code is berth's;\n" +
			"a command that cannot be started exits 126 (127 when it is not found).",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, command := args[0], args[1:]
			if command[0] == "--" { // kept as an argument: flags stop at TASK
				command = command[1:]
			}
			if len(command) == 0 {
				return errors.New("give a command to run after the task: berth exec TASK -- COMMAND [ARG...]")
			}
			return g.stream(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				return runExec(ctx, c, &o, target, command, os.Stdin, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	fs := cmd.Flags()
	fs.SetInterspersed(false) // flags after TASK belong to the command
	fs.BoolVarP(&o.interactive, "interactive", "i", false, "pass standard input to the command")
	fs.BoolVarP(&o.tty, "tty", "t", false, "give the command a terminal (with -i: this terminal, in raw mode)")
	fs.StringArrayVarP(&o.env, "env", "e", nil, "set an environment variable KEY=VALUE")
	fs.StringVarP(&o.user, "user", "u", "", "user[:group] to run as (default: the container's)")
	fs.StringVarP(&o.workdir, "workdir", "w", "", "working directory (default: the container's)")
	return cmd
}

// runExec starts the command and relays input and output until it exits;
// its exit code comes back as an exitCode error.
func runExec(ctx context.Context, c pb.ControlClient, o *execOpts, target string, args []string, stdin *os.File, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := c.Exec(ctx)
	if err != nil {
		return err
	}
	start := &pb.ExecStart{Task: target, Args: args, Tty: o.tty, Stdin: o.interactive, Env: o.env, User: o.user, Workdir: o.workdir}
	term := o.tty && isTerminal(stdin)
	if term {
		start.Size = terminalSize(stdin)
	}
	s := &execSender{st: st}
	if err := s.send(&pb.ExecInput{Kind: &pb.ExecInput_Start{Start: start}}); err != nil {
		return err
	}
	if term {
		restore, err := rawTerminal(stdin)
		if err != nil {
			return err
		}
		defer restore()
		stop := s.followResize(stdin)
		defer stop()
	}
	if o.interactive {
		go s.copyStdin(stdin) // ends with stdin, or with the process
	}
	return relayOutput(st, stdout, stderr)
}

// relayOutput writes the process's output until its exit code.
func relayOutput(st pb.Control_ExecClient, stdout, stderr io.Writer) error {
	started := false
	for {
		m, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("the manager ended the exec without an exit code")
		}
		if err != nil {
			if code := status.Code(err); started && code != codes.Unavailable && code != codes.Canceled {
				fmt.Fprintln(stderr, "berth:", status.Convert(err).Message())
				if code == codes.NotFound {
					return exitCode(127)
				}
				return exitCode(126)
			}
			return err
		}
		switch k := m.GetKind().(type) {
		case *pb.ExecOutput_Started:
			started = true
		case *pb.ExecOutput_Stdout:
			_, _ = stdout.Write(k.Stdout)
		case *pb.ExecOutput_Stderr:
			_, _ = stderr.Write(k.Stderr)
		case *pb.ExecOutput_ExitCode:
			return exitCode(k.ExitCode)
		}
	}
}

// execSender serialises the sends of the input copier and the resizer.
type execSender struct {
	mu sync.Mutex
	st pb.Control_ExecClient
}

func (s *execSender) send(m *pb.ExecInput) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Send(m)
}

// copyStdin sends standard input; its end closes the process's input.
func (s *execSender) copyStdin(stdin io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := stdin.Read(buf)
		if n > 0 {
			if s.send(&pb.ExecInput{Kind: &pb.ExecInput_Stdin{Stdin: append([]byte(nil), buf[:n]...)}}) != nil {
				return
			}
		}
		if err != nil {
			_ = s.send(&pb.ExecInput{Kind: &pb.ExecInput_CloseStdin{CloseStdin: true}})
			return
		}
	}
}

// followResize sends the terminal's size whenever it changes (SIGWINCH).
func (s *execSender) followResize(term *os.File) (stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGWINCH)
	done, exited := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-sigs:
				_ = s.send(&pb.ExecInput{Kind: &pb.ExecInput_Resize{Resize: terminalSize(term)}})
			case <-done:
				return
			}
		}
	}()
	return func() { signal.Stop(sigs); close(done); <-exited }
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func terminalSize(f *os.File) *pb.WindowSize {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		return nil
	}
	return &pb.WindowSize{Rows: uint32(ws.Row), Cols: uint32(ws.Col)}
}

// rawTerminal puts the terminal in raw mode (as cfmakeraw) so keys go to
// the remote terminal as typed; restore puts it back.
func rawTerminal(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("terminal: %w", err)
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, fmt.Errorf("terminal raw mode: %w", err)
	}
	return func() { _ = unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}
