// Command berth is the CLI, modelled on `docker service/node/cluster`. It
// talks to a manager's Control API over gRPC.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"berth/internal/version"
)

// globalOpts are the flags every subcommand shares.
type globalOpts struct {
	host   string
	tlsDir string
}

func main() {
	if err := newRootCmd().Execute(); err != nil {
		var code exitCode
		if errors.As(err, &code) {
			os.Exit(int(code))
		}
		fmt.Fprintln(os.Stderr, "berth:", err)
		os.Exit(1)
	}
}

func newRootCmd() *cobra.Command {
	opts := &globalOpts{}
	root := &cobra.Command{
		Use:           "berth",
		Short:         "Deploy and run replicated services on a berth cluster",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVarP(&opts.host, "host", "H", envOr("BERTH_HOST", ""),
		"manager address HOST:PORT (default: $BERTH_HOST, else this host's manager)")
	root.PersistentFlags().StringVar(&opts.tlsDir, "tls-dir", envOr("BERTH_TLS_DIR", ""),
		"directory with the client certificate bundle (default: $BERTH_TLS_DIR, else ~/.berth)")
	root.AddCommand(newVersionCmd(), newServiceCmd(opts), newNodeCmd(opts), newNetworkCmd(opts), newClusterCmd(opts), newSecretCmd(opts), newConfigCmd(opts), newTaskCmd(opts), newExecCmd(opts), newEventsCmd(opts), newStatsCmd(opts), newStackCmd(opts))
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command group below root fail on a
// word that is not one of its commands (cobra would print the group's
// help and exit 0); alone, a group still prints its help.
func refuseUnknownSubcommands(root *cobra.Command) {
	for _, c := range root.Commands() {
		refuseUnknownSubcommands(c)
		if !c.HasSubCommands() || c.Runnable() {
			continue
		}
		c.Args = cobra.ArbitraryArgs
		c.SuggestionsMinimumDistance = 2
		c.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return cmd.Help()
			}
			msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
			if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
				msg += fmt.Sprintf(" (did you mean %q?)", s[0])
			}
			return fmt.Errorf("%s; see '%s --help' for its commands", msg, cmd.CommandPath())
		}
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this client",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintln(cmd.OutOrStdout(), version.String("berth"))
			return nil
		},
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
