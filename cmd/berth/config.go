package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"time"

	"github.com/spf13/cobra"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

func newConfigCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Manage configs"}
	cmd.AddCommand(newConfigCreateCmd(g), newConfigLsCmd(g), newConfigInspectCmd(g), newConfigRmCmd(g))
	return cmd
}

func newConfigCreateCmd(g *globalOpts) *cobra.Command {
	long := `Create a config from the content of FILE, or of stdin with "-".

The managers send it only to the nodes running tasks of services that name
it (service create --config NAME), where it appears read-only at /NAME or
at the target given. Unlike a secret, its value is not hidden: config
inspect shows it. A config does not change: to change one, create a new
config and update the services to it.`
	return newFileCreateCmd(g, "config", long, func(ctx context.Context, c pb.ControlClient, a *pb.Annotations, data []byte) (string, error) {
		r, err := c.CreateConfig(ctx, &pb.CreateConfigRequest{Spec: &pb.ConfigSpec{Annotations: a, Data: data}})
		return r.GetConfig().GetId(), err
	})
}

func newConfigLsCmd(g *globalOpts) *cobra.Command {
	return newFileLsCmd(g, "List configs", func(ctx context.Context, c pb.ControlClient, f *pb.ListFilters) ([]fileObject, error) {
		cfgs, err := listAll(ctx, func(ctx context.Context, token string) ([]*pb.Config, string, error) {
			r, err := c.ListConfigs(ctx, &pb.ListConfigsRequest{Filters: f, PageToken: token})
			return r.GetConfigs(), r.GetNextPageToken(), err
		})
		var objs []fileObject
		for _, cfg := range cfgs {
			objs = append(objs, fileObject{cfg.GetId(), cfg.GetMeta(), cfg.GetSpec().GetAnnotations(), cfg})
		}
		return objs, err
	})
}

func newConfigInspectCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "inspect CONFIG [CONFIG...]", Short: "Show configs in detail, value included (JSON, --pretty or --format)", Args: cobra.MinimumNArgs(1)}
	format := addFormatFlag(cmd, "json")
	pretty := cmd.Flags().Bool("pretty", false, "print the fields one a line and the value as text")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		if *pretty && cmd.Flags().Changed("format") {
			return fmt.Errorf("--pretty and --format both choose the output: use one")
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			var out []*pb.Config
			for _, a := range args {
				r, err := c.GetConfig(ctx, &pb.GetConfigRequest{ConfigId: a})
				if err != nil {
					return err
				}
				out = append(out, r.GetConfig())
			}
			if *pretty {
				for i, cfg := range out {
					if i > 0 {
						fmt.Fprintln(cmd.OutOrStdout())
					}
					printConfigPretty(cmd.OutOrStdout(), cfg)
				}
				return nil
			}
			return printObjects(cmd.OutOrStdout(), *format, out)
		})
	}
	return cmd
}

// printConfigPretty writes a config as `docker config inspect --pretty`.
func printConfigPretty(w io.Writer, c *pb.Config) {
	fmt.Fprintf(w, "ID:\t\t%s\nName:\t\t%s\n", c.GetId(), c.GetSpec().GetAnnotations().GetName())
	if l := labelString(c.GetSpec().GetAnnotations().GetLabels()); l != "" {
		fmt.Fprintf(w, "Labels:\t\t%s\n", l)
	}
	fmt.Fprintf(w, "Created at:\t%s\n", c.GetMeta().GetCreatedAt().AsTime().Local().Format(time.RFC3339))
	fmt.Fprintf(w, "Data:\n%s", c.GetSpec().GetData())
	if d := c.GetSpec().GetData(); len(d) > 0 && d[len(d)-1] != '\n' {
		fmt.Fprintln(w)
	}
}

func newConfigRmCmd(g *globalOpts) *cobra.Command {
	return newFileRmCmd(g, "config", func(ctx context.Context, c pb.ControlClient, id string) error {
		_, err := c.RemoveConfig(ctx, &pb.RemoveConfigRequest{ConfigId: id})
		return err
	})
}

// configFlagHelp describes --config and --config-add.
const configFlagHelp = "expose a config read-only: `NAME` (at /NAME, mode 0444) or source=NAME,target=/PATH,uid=U,gid=G,mode=0440 (repeatable)"

// configRefs reads --config flags into references.
func configRefs(flag string, vals []string) ([]*pb.ConfigReference, error) {
	return parseRefs(flag, vals, flagparse.Config)
}

// editConfigs applies update's --config-rm (by config name or ID, or by
// target) and then --config-add; an added config replaces one with the
// same target, as Docker's CLI does.
func editConfigs(c *pb.ContainerSpec, add, rm []string) error {
	adds, err := configRefs("config-add", add)
	if err != nil {
		return err
	}
	target := func(t string) string { return path.Clean("/" + t) }
	keys := func(r *pb.ConfigReference) refKeys {
		return refKeys{r.GetConfigName(), r.GetConfigId(), r.GetFileName()}
	}
	c.Configs = editRefs(c.GetConfigs(), adds, rm, keys, target)
	return nil
}
