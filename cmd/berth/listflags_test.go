package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryListTakesQuietAndFilter walks the CLI: every ls and ps command
// has -q/--quiet and -f/--filter, as Docker's do, and its help names the
// filter keys it accepts.
func TestEveryListTakesQuietAndFilter(t *testing.T) {
	var walk func(c *cobra.Command)
	n := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		if c.Name() != "ls" && c.Name() != "ps" {
			return
		}
		n++
		q, f := c.Flags().Lookup("quiet"), c.Flags().Lookup("filter")
		if q == nil || q.Shorthand != "q" || f == nil || f.Shorthand != "f" || !strings.Contains(f.Usage, "keys: ") {
			t.Errorf("berth %s: want -q/--quiet and -f/--filter naming its keys", c.CommandPath())
		}
	}
	walk(newRootCmd())
	if n < 5 {
		t.Fatalf("found %d ls/ps commands, want at least service ls/ps, node ls, network ls, secret ls", n)
	}
}
