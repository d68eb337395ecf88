// Package clitest checks what the help of berth's command-line tools
// shows, for the tests of each binary.
package clitest

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// CheckFlagHelp fails t for every flag of root and its commands whose
// help shows a value name that is not one word (pflag takes the first
// `quoted` words of the usage as the value name, so a command quoted in
// a usage became one), and for help that shows [=true|false] after a
// switch.
func CheckFlagHelp(t *testing.T, root *cobra.Command) {
	t.Helper()
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.InitDefaultHelpFlag()
		check := func(f *pflag.Flag) {
			if name, _ := pflag.UnquoteUsage(f); strings.ContainsAny(name, " \t") {
				t.Errorf("%s --%s shows the value name %q: give a one-word name such as HOST:PORT", c.CommandPath(), f.Name, name)
			}
		}
		c.LocalFlags().VisitAll(check)
		for _, line := range strings.Split(c.LocalFlags().FlagUsages(), "\n") {
			if strings.Contains(line, "[=true|false]") {
				t.Errorf("%s help shows %q", c.CommandPath(), strings.TrimSpace(line))
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}
