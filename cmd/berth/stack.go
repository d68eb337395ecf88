package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"berth/deploy/stack"
	pb "berth/proto/berth/v1"
)

// stackRemoveWait bounds how long `stack rm` waits for the tasks of the
// removed services to go before it removes networks and secrets.
const stackRemoveWait = 2 * time.Minute

func newStackCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "stack", Short: "Deploy and manage stacks of services from Compose files"}
	cmd.AddCommand(newStackDeployCmd(g), newStackConfigCmd(), newStackLsCmd(g), newStackServicesCmd(g), newStackPsCmd(g), newStackRmCmd(g))
	return cmd
}

// composeFlags are the flags that say which Compose files to read.
type composeFlags struct {
	files, profiles []string
}

func (f *composeFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringArrayVarP(&f.files, "compose-file", "c", nil, "Compose file (repeatable: later files are merged over earlier ones)")
	cmd.Flags().StringArrayVar(&f.profiles, "profile", nil, "enable the services of a Compose profile (repeatable)")
}

func (f *composeFlags) options() stack.Options {
	return stack.Options{Files: f.files, Env: os.Environ(), Profiles: f.profiles}
}

func printWarnings(cmd *cobra.Command, ws []stack.Warning) {
	for _, w := range ws {
		fmt.Fprintln(cmd.ErrOrStderr(), "warning: "+w.String())
	}
}

func newStackConfigCmd() *cobra.Command {
	var f composeFlags
	cmd := &cobra.Command{
		Use:   "config -c FILE [-c FILE...] [NAME]",
		Short: "Print the Compose files merged and interpolated, as berth reads them",
		Long:  "Print the Compose files merged and interpolated, as berth reads them. Object names are shown for stack NAME (default: stack).",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := "stack"
			if len(args) == 1 {
				name = args[0]
			}
			p, err := stack.Load(cmd.Context(), name, f.options())
			if err != nil {
				return err
			}
			printWarnings(cmd, p.Warnings)
			b, err := p.YAML()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	f.register(cmd)
	return cmd
}

func newStackLsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List stacks", Args: cobra.NoArgs}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "name")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		f, err := lf.parse()
		if err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			all, err := stack.List(ctx, stackAPI{c})
			if err != nil {
				return err
			}
			list := []stack.Summary{}
			for _, s := range all {
				if len(f["name"]) == 0 || slices.ContainsFunc(f["name"], func(p string) bool { return strings.HasPrefix(s.Name, p) }) {
					list = append(list, s)
				}
			}
			switch {
			case lf.quiet:
				printIDs(cmd.OutOrStdout(), list, func(s stack.Summary) string { return s.Name })
				return nil
			case *format == "json":
				b, err := json.MarshalIndent(list, "", "  ")
				if err != nil {
					return err
				}
				_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
				return err
			}
			rows := [][]string{{"NAME", "SERVICES", "NETWORKS", "SECRETS", "CONFIGS"}}
			for _, s := range list {
				rows = append(rows, []string{s.Name, strconv.Itoa(s.Services), strconv.Itoa(s.Networks), strconv.Itoa(s.Secrets), strconv.Itoa(s.Configs)})
			}
			return table(cmd.OutOrStdout(), rows)
		})
	}
	return cmd
}

func newStackServicesCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "services STACK", Short: "List the services of a stack", Args: cobra.ExactArgs(1)}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "label", "mode")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		f, err := lf.parse()
		if err != nil {
			return err
		}
		req := &pb.ListServicesRequest{Filters: inStack(common(f), args[0]), Status: !lf.quiet}
		if req.Modes, err = oneOf("mode", f["mode"], serviceModes); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			svcs, err := stackServices(ctx, c, req, args[0])
			if err != nil {
				return err
			}
			switch {
			case lf.quiet:
				printIDs(cmd.OutOrStdout(), svcs, func(s *pb.Service) string { return shortID(s.GetId()) })
				return nil
			case *format == "json":
				return printJSON(cmd.OutOrStdout(), svcs)
			}
			tasks, err := givenPortTasks(ctx, c, svcs)
			if err != nil {
				return err
			}
			return printServices(cmd, *format, svcs, tasks)
		})
	}
	return cmd
}

// inStack narrows list filters to the objects of stack name.
func inStack(f *pb.ListFilters, name string) *pb.ListFilters {
	if f.Labels == nil {
		f.Labels = map[string]string{}
	}
	f.Labels[stack.Namespace] = name
	return f
}

// stackServices lists the services req asks for, sorted by name; a stack
// without any service is an error.
func stackServices(ctx context.Context, c pb.ControlClient, req *pb.ListServicesRequest, name string) ([]*pb.Service, error) {
	svcs, err := listAll(ctx, func(ctx context.Context, token string) ([]*pb.Service, string, error) {
		req.PageToken = token
		r, err := c.ListServices(ctx, req)
		return r.GetServices(), r.GetNextPageToken(), err
	})
	if err != nil {
		return nil, err
	}
	if len(svcs) == 0 && len(req.GetFilters().GetLabels()) == 1 && len(req.GetFilters().GetNamePrefixes())+len(req.GetFilters().GetIdPrefixes())+len(req.GetModes()) == 0 {
		return nil, fmt.Errorf("nothing found in stack %s", name)
	}
	sort.Slice(svcs, func(i, j int) bool {
		return svcs[i].GetSpec().GetAnnotations().GetName() < svcs[j].GetSpec().GetAnnotations().GetName()
	})
	return svcs, nil
}

func newStackRmCmd(g *globalOpts) *cobra.Command {
	return &cobra.Command{
		Use:     "rm STACK [STACK...]",
		Aliases: []string{"remove", "down"},
		Short:   "Remove stacks: their services, then their networks, secrets and configs (external ones stay)",
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.stream(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				for _, name := range args {
					fmt.Fprintf(cmd.OutOrStdout(), "Removing stack %s\n", name)
					wctx, cancel := context.WithTimeout(ctx, stackRemoveWait)
					found, err := stack.Remove(wctx, stackAPI{c}, name, 200*time.Millisecond, func(s string) { fmt.Fprintln(cmd.OutOrStdout(), s) })
					cancel()
					if err != nil {
						return fmt.Errorf("stack %s: %w", name, err)
					}
					if !found {
						fmt.Fprintf(cmd.ErrOrStderr(), "nothing found in stack %s\n", name)
					}
				}
				return nil
			})
		},
	}
}
