package initproc

import (
	"fmt"
	"math"
	"strconv"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// Descriptor hygiene of the init (runc's CVE-2024-21626 was one leaked
// directory descriptor): a container process must start with its stdio
// and nothing else, whatever the agent's own caller left open.

// closeInherited closes every descriptor above the one the agent passes
// (initconf.FdSync) that is not close-on-exec: those
// were inherited from the agent's own parent, not opened by this process
// (Go opens everything close-on-exec). Then it marks the agent's
// close-on-exec too: the init keeps them for itself only. It runs first
// thing in the init, and lists /proc/self/fd with raw system calls: an
// os.File would start Go's poller (epoll and an eventfd), a tenth of a
// millisecond of a container's start.
func closeInherited() error {
	fds, err := openDescriptors()
	if err != nil {
		return fmt.Errorf("list own descriptors: %w", err)
	}
	for _, fd := range fds {
		if fd <= initconf.FdSync {
			continue
		}
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		if err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
	return markCloexec()
}

// openDescriptors lists the numbers in /proc/self/fd, leaving out the one
// it reads them through.
func openDescriptors() ([]int, error) {
	dir, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(dir)
	var fds []int
	buf := make([]byte, 4096)
	for {
		n, err := unix.Getdents(dir, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return fds, nil
		}
		var names []string
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
		for _, name := range names {
			if fd, err := strconv.Atoi(name); err == nil && fd != dir {
				fds = append(fds, fd)
			}
		}
	}
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
