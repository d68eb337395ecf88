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
	root.AddCommand(newVersionCmd(), newServiceCmd(opts), newNodeCmd(opts), newNetworkCmd(opts), newClusterCmd(opts), newExecCmd(opts), newEventsCmd(opts))
	return root
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
