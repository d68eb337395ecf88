// Command berth-init is every container's PID 1: it sets the container up
// from the config the agent sends, starts the user process, forwards
// signals, reaps zombies and starts exec'd processes. berth-agent embeds
// it (make build-init builds it first) and writes it to its data dir, so
// it is not shipped on its own.
//
// It imports the standard library, golang.org/x/sys/unix and the init's
// own packages only (internal/layout's test keeps it so): its memory and
// start time are paid once per container.
package main

import (
	"fmt"
	"os"

	"berth/agent/runtime/initproc"
)

func main() {
	if !initproc.IsInit() {
		fmt.Fprintln(os.Stderr, "berth-init is started by berth-agent as a container's PID 1, not by hand")
		os.Exit(2)
	}
	initproc.Main()
}
