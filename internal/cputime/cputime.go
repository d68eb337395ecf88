// Package cputime reads the CPU time this process has used, for benchmarks
// on a shared machine: wall-clock figures there depend on what else runs,
// CPU seconds much less.
package cputime

import (
	"syscall"
	"time"
)

// Used returns the user plus system CPU time the process has used so far
// (every thread), or 0 when the kernel does not say.
func Used() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
