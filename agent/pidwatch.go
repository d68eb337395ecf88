package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// pidPoll is how often a process is checked where no pidfd can be had
// (kernels before 5.3): a container's end is noticed within it.
const pidPoll = 250 * time.Millisecond

// procStart is the start time of process pid (field 22 of
// /proc/PID/stat, in clock ticks since boot): with the pid, it names one
// process for good, as a recycled pid starts later.
func procStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; fields resume after ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// sameProc says whether pid is still the process that started at start.
func sameProc(pid int, start uint64) bool {
	st, err := procStart(pid)
	return err == nil && st == start
}

// waitProc returns once the process pid that started at start has ended
// (nil), or when ctx ends (its error). It waits on a pidfd in the Go
// poller, holding no thread; without pidfds it polls /proc.
func waitProc(ctx context.Context, pid int, start uint64) error {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return pollProc(ctx, pid, start)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer f.Close()
	if !sameProc(pid, start) { // checked after the open: fd names that process
		return nil
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return pollProc(ctx, pid, start)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetReadDeadline(time.Now()) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool {
		p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(p, 0)
		return n > 0
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
		return pollProc(ctx, pid, start)
	}
	return nil
}

// pollProc is waitProc by polling /proc every pidPoll.
func pollProc(ctx context.Context, pid int, start uint64) error {
	t := time.NewTicker(pidPoll)
	defer t.Stop()
	for sameProc(pid, start) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
