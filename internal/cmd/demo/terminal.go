package main

import (
	"os"
	"os/signal"

	"golang.org/x/sys/unix"
)

// takeTerminal puts the demo in a process group of its own and makes that
// the terminal's foreground group, as a shell does for a job, so that
// Ctrl-C interrupts the demo alone. make, which runs it, would otherwise
// get the same SIGINT and, whatever the demo then does, die of it once
// the demo exits, reporting an error after a clean teardown. It returns
// the function that gives the terminal back to the group that had it.
// Without a terminal on stdin it does nothing.
func takeTerminal() (giveBack func()) {
	fd := int(os.Stdin.Fd())
	orig, err := unix.IoctlGetInt(fd, unix.TIOCGPGRP)
	if err != nil || orig != unix.Getpgrp() {
		return func() {} // no terminal, or not ours to give
	}
	if err := unix.Setpgid(0, 0); err != nil {
		return func() {}
	}
	// A background group changing the foreground one gets SIGTTOU.
	signal.Ignore(unix.SIGTTOU)
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, unix.Getpgrp()); err != nil {
		return func() {}
	}
	return func() { unix.IoctlSetPointerInt(fd, unix.TIOCSPGRP, orig) }
}
