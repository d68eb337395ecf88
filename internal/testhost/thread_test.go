package testhost

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"berth/internal/await"
)

// TestChildOutlivesTheThreadThatStartedIt: Pdeathsig fires when the
// thread that forked a child exits, not the process. A goroutine that
// locks its thread and returns ends that thread (netns helpers do it on
// purpose), so a child Start forked from such a thread was killed with
// it. Start forks from a thread of the cluster's own that lives until
// Close; the child must answer after the caller's thread is gone.
func TestChildOutlivesTheThreadThatStartedIt(t *testing.T) {
	needRoot(t)
	t.Parallel()
	c := NewT(t, 1)
	h := c.Hosts[0]
	cmd := h.Command(t.Context(), "busybox", "sh", "-c", "while read x; do echo got $x; done")
	// Pipes of our own: Cmd's would be closed by the reaper once the
	// child is gone, hiding how it ended.
	stdin, in, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outPipe, stdout, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); outPipe.Close() })
	cmd.Stdin, cmd.Stdout = stdin, stdout
	var p *Proc
	tid := onEndingThread(func() { p, err = h.Start(cmd) })
	stdin.Close()
	stdout.Close()
	if err != nil {
		t.Fatal(err)
	}
	task := fmt.Sprintf("/proc/self/task/%d", tid)
	await.True(t, wait, func() bool {
		_, err := os.Stat(task)
		return os.IsNotExist(err)
	}, "the locked thread %d that called Start ends", tid)
	// The kernel queued any death signal while the thread exited, so a
	// killed child runs no more user code: an answer proves it lives.
	io.WriteString(in, "ping\n") // a dead child's EPIPE shows below
	line, err := bufio.NewReader(outPipe).ReadString('\n')
	if strings.TrimSpace(line) != "got ping" {
		st, _ := p.Exited()
		t.Fatalf("child answered %q (%v) after the thread that started it ended, want \"got ping\"; exit state %v", line, err, st)
	}
}

// onEndingThread runs f on an OS thread that ends when f returns, and
// returns the thread's id. Go parks the main thread instead of ending it,
// so an attempt that lands there holds it and tries again elsewhere.
func onEndingThread(f func()) int {
	var held []chan struct{}
	defer func() {
		for _, h := range held {
			close(h)
		}
	}()
	for {
		tidc := make(chan int)
		release := make(chan struct{})
		go func() {
			runtime.LockOSThread() // unlocked only on the main thread
			tid := unix.Gettid()
			if tid == unix.Getpid() {
				tidc <- 0
				<-release
				runtime.UnlockOSThread()
				return
			}
			f()
			tidc <- tid
		}()
		if tid := <-tidc; tid != 0 {
			return tid
		}
		held = append(held, release)
	}
}
