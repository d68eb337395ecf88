package initproc

import (
	"fmt"
	"math"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// Descriptor hygiene of the init (runc's CVE-2024-21626 was one leaked
// directory descriptor): a container process must start with its stdio
// and nothing else, whatever the agent's own caller left open.

// closeInherited closes every descriptor above the ones the agent passes
// (initconf.FdSync to initconf.FdPayload) that is not close-on-exec: those were inherited
// from the agent's own parent, not opened by this process (Go opens
// everything close-on-exec). Then it marks the agent's close-on-exec too:
// the init keeps them for itself only. It runs first thing in the init.
func closeInherited() error {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list own descriptors: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return fmt.Errorf("list own descriptors: %w", err)
	}
	for _, n := range names {
		fd, err := strconv.Atoi(n)
		if err != nil || fd <= initconf.FdPayload {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
	return markCloexec()
}

// markCloexec makes every descriptor above stdio close-on-exec, so that a
// process the init starts gets only the descriptors handed to it as 0-2.
// spawn calls it before every start: whatever opened a descriptor since,
// nothing but stdio crosses an exec.
func markCloexec() error {
	if err := unix.CloseRange(3, math.MaxUint32, unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close_range (Linux 5.11 or later is needed): %w", err)
	}
	return nil
}
