// Command sweep removes what crashed test runs and demos left on this
// machine: test hosts (network namespaces, links, nftables tables and
// firewall rules of dead runs). Live runs are left alone. `make sweep` runs it.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"berth/internal/testhost"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := testhost.Sweep(context.Background(), log); err != nil {
		fmt.Fprintln(os.Stderr, "sweep:", err)
		os.Exit(1)
	}
}
