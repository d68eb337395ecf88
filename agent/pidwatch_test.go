package agent

import (
	"context"
	"errors"
	"os/exec"
	"testing"
	"time"
)

// TestWaitProc: the pidfd wait and the /proc poll both return once the
// process ends, and on their context's end; a pid whose start time does
// not match (reused) counts as ended.
func TestWaitProc(t *testing.T) {
	for name, wait := range map[string]func(context.Context, int, uint64) error{"pidfd": waitProc, "poll": pollProc} {
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command("sleep", "600")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			reaped := make(chan struct{})
			go func() { cmd.Wait(); close(reaped) }()
			defer func() { cmd.Process.Kill(); <-reaped }()
			pid := cmd.Process.Pid
			start, err := procStart(pid)
			if err != nil {
				t.Fatal(err)
			}
			if err := wait(context.Background(), pid, start+1); err != nil {
				t.Fatalf("another start time: %v, want it counted as ended", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if err := wait(ctx, pid, start); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a live process, ctx ended: %v", err)
			}
			done := make(chan error, 1)
			go func() { done <- wait(context.Background(), pid, start) }()
			cmd.Process.Kill()
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the wait did not see the process end")
			}
		})
	}
}
