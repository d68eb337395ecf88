package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"berth/internal/await"
)

func TestAdoptAfterRestart(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("survivor", "sh", "-c", `trap 'echo bye; exit 3' TERM; echo up; while true; do sleep 0.05; done`))
	await.True(t, 5*time.Second, func() bool { return strings.Contains(e.logs(t, "survivor"), "up") }, "not up")
	done := e.run(t, e.spec("finished", "sh", "-c", "exit 4"))
	e.wait(t, done)
	pid := c.Pid()

	e.rt.Close() // the agent goes away; containers keep running
	rt2 := e.newRuntime(t)
	adopted, err := rt2.Adopt(context.Background())
	must(t, err)
	if len(adopted) != 2 {
		t.Fatalf("adopted %d containers, want 2", len(adopted))
	}
	e.rt = rt2 // cleanup goes through the new runtime
	c2, err := rt2.Get("survivor")
	must(t, err)
	if !c2.Running() || c2.Pid() != pid {
		t.Fatalf("survivor not adopted as running with pid %d", pid)
	}
	f, _ := rt2.Get("finished")
	if st, ok := f.Exited(); !ok || st.Code != 4 {
		t.Fatalf("finished container: %+v %v", st, ok)
	}
	st, err := c2.Stop(context.Background(), 5*time.Second)
	must(t, err)
	if st.Code != 3 || st.Reason != ReasonError {
		t.Fatalf("adopted container's exit = %+v, want code 3", st)
	}
	if !strings.Contains(e.logs(t, "survivor"), "bye") {
		t.Fatal("log lacks the output written during stop")
	}
	if c2.rec.Cgroup.Exists() {
		t.Fatal("cgroup of adopted container not removed")
	}
}

func TestExecWithAndWithoutTTY(t *testing.T) {
	e := newEnv(t)
	s := e.spec("target", "sleep", "1000")
	s.Hostname = "box"
	s.Env = []string{"FROM_SPEC=1"}
	c := e.run(t, s)
	ctx := context.Background()

	var out, errb bytes.Buffer
	code, err := c.Exec(ctx, ExecSpec{
		Args:  []string{"sh", "-c", `read line; echo "got $line on $(hostname) $FROM_SPEC $X"; echo err >&2; tr '\0' ' ' < /proc/1/cmdline | cut -c1-10; exit 5`},
		Env:   []string{"X=y"},
		Stdin: strings.NewReader("hello\n"), Stdout: &out, Stderr: &errb,
	})
	must(t, err)
	if code != 5 || out.String() != "got hello on box 1 y\nberth-init\n" || errb.String() != "err\n" {
		t.Fatalf("exec: code %d stdout %q stderr %q", code, out.String(), errb.String())
	}

	var tty bytes.Buffer
	code, err = c.Exec(ctx, ExecSpec{Args: []string{"sh", "-c", "tty; echo $TERM"}, TTY: true, Stdout: &tty})
	must(t, err)
	if code != 0 || !strings.HasPrefix(tty.String(), "/dev/pts/") || !strings.Contains(tty.String(), "xterm") {
		t.Fatalf("tty exec: code %d out %q", code, tty.String())
	}

	_, err = c.Exec(ctx, ExecSpec{Args: []string{"nosuch"}})
	if !errors.Is(err, ErrCommandNotFound) {
		t.Fatalf("exec of missing command: %v", err)
	}

	cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.Exec(cctx, ExecSpec{Args: []string{"sleep", "1000"}}); err == nil || time.Since(start) > 3*time.Second {
		t.Fatalf("cancelled exec: err %v after %v", err, time.Since(start))
	}
	_, err = c.Stop(ctx, time.Second)
	must(t, err)
	if _, err := c.Exec(ctx, ExecSpec{Args: []string{"true"}}); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("exec in stopped container: %v", err)
	}
}

// TestExecTerminalSize: a TTY exec starts at the size asked for and
// follows each resize.
func TestExecTerminalSize(t *testing.T) {
	e := newEnv(t)
	c := e.run(t, e.spec("sized", "sleep", "1000"))
	resize := make(chan WindowSize) // a send returns once the one before is applied
	inR, inW := io.Pipe()
	out := &syncWriter{}
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(context.Background(), ExecSpec{Args: []string{"sh", "-c", "stty size; read x; stty size"}, TTY: true,
			Stdin: inR, Stdout: out, Size: WindowSize{Rows: 33, Cols: 101}, Resize: resize})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "33 101") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	resize <- WindowSize{Rows: 40, Cols: 120}
	resize <- WindowSize{Rows: 41, Cols: 121}
	resize <- WindowSize{Rows: 41, Cols: 121}
	_, _ = inW.Write([]byte("\n"))
	must(t, <-done)
	inW.Close()
	if got := strings.Fields(out.String()); len(got) != 4 || got[0] != "33" || got[1] != "101" || got[2] != "41" || got[3] != "121" {
		t.Fatalf("stty size printed %q, want 33 101 then 41 121", out.String())
	}
}

// syncWriter is a buffer written by one goroutine and read by another.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestTTYContainer(t *testing.T) {
	e := newEnv(t)
	s := e.spec("tty", "sh", "-c", "tty; echo $TERM")
	s.TTY = true
	out := e.output(t, s)
	if !strings.HasPrefix(out, "/dev/pts/0") || !strings.Contains(out, "xterm") {
		t.Fatalf("output: %q", out)
	}
}
