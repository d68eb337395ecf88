package initproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dropCapabilities limits the calling thread to keep (capability numbers)
// in the bounding, permitted and effective sets and empties the
// inheritable and ambient ones. The init calls it on its locked main
// thread, from which every container process is forked. Raw prctl and
// capset: a capability library would cost every container's PID 1 its
// package graph.
func dropCapabilities(keep []uint) error {
	last, err := lastCap()
	if err != nil {
		return err
	}
	var mask [2]uint32
	for _, c := range keep {
		if c > last {
			return fmt.Errorf("drop capabilities: capability %d is unknown to this kernel (last is %d)", c, last)
		}
		mask[c/32] |= 1 << (c % 32)
	}
	// The bounding set first: dropping from it needs CAP_SETPCAP, which
	// the effective set may be about to lose.
	for c := uint(0); c <= last; c++ {
		if mask[c/32]&(1<<(c%32)) == 0 {
			if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
				return fmt.Errorf("drop capability %d from the bounding set: %w", c, err)
			}
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: mask[0], Permitted: mask[0]},
		{Effective: mask[1], Permitted: mask[1]},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("drop capabilities: %w", err)
	}
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		return fmt.Errorf("clear ambient capabilities: %w", err)
	}
	return nil
}

// lastCap is the highest capability number the kernel knows.
func lastCap() (uint, error) {
	data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, fmt.Errorf("capabilities: %w", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 32)
	if err != nil || n >= 64 {
		return 0, fmt.Errorf("capabilities: cap_last_cap %q", data)
	}
	return uint(n), nil
}
