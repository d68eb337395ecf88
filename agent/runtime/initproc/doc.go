// Package initproc is the container init: PID 1 of every container, run
// from its own small binary (internal/cmd/berth-init). It reads its
// config from the agent (package initconf), builds the container's
// filesystem and pivots into it, drops capabilities, installs the seccomp
// program, starts the user process and then forwards signals, reaps
// zombies, copies output to the rotated log and starts exec'd processes.
//
// Its memory and start time are paid once per container, so it imports
// the standard library, golang.org/x/sys/unix and initconf only
// (internal/layout's test keeps it so).
package initproc
