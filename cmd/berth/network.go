package main

import (
	"context"
	"fmt"
	"sort"

	"github.com/spf13/cobra"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

func newNetworkCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "network", Short: "Manage overlay networks"}
	cmd.AddCommand(newNetworkCreateCmd(g), newNetworkLsCmd(g), newNetworkInspectCmd(g), newNetworkRmCmd(g))
	return cmd
}

func newNetworkCreateCmd(g *globalOpts) *cobra.Command {
	var subnet string
	var attachable bool
	var labels []string
	cmd := &cobra.Command{
		Use:   "create [OPTIONS] NAME",
		Short: "Create an overlay network",
		Long: `Create an overlay network that services join with --network NAME.
With --attachable, standalone containers started on a node with
berth-agent run --network NAME join it as well: they get an address on it,
reach services by name and VIP, and services' tasks reach them by their
container name and aliases.

Without --subnet the network gets the next free subnet of the cluster's
address pool (berth-manager --default-addr-pool, 10.0.0.0/8 in /24s unless
set when the cluster was created).`,
		Args: cobra.ExactArgs(1),
	}
	fs := cmd.Flags()
	fs.StringVar(&subnet, "subnet", "", "subnet in CIDR form, e.g. 10.20.0.0/24 (default: one from the cluster pool)")
	fs.BoolVar(&attachable, "attachable", false, "let standalone containers join the network too (berth-agent run --network NAME on a node)")
	fs.StringArrayVarP(&labels, "label", "l", nil, "network label key=value (repeatable)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		lbls, err := flagparse.Labels("label", labels)
		if err != nil {
			return err
		}
		spec := &pb.NetworkSpec{Annotations: &pb.Annotations{Name: args[0], Labels: lbls}, Driver: "overlay", Subnet: subnet, Attachable: attachable}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			r, err := c.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: spec})
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), r.GetNetwork().GetId())
			return nil
		})
	}
	return cmd
}

func newNetworkLsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List networks", Args: cobra.NoArgs}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "label")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		f, err := lf.parse()
		if err != nil {
			return err
		}
		req := &pb.ListNetworksRequest{Filters: common(f)}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			nets, err := listAll(ctx, func(ctx context.Context, token string) ([]*pb.Network, string, error) {
				req.PageToken = token
				r, err := c.ListNetworks(ctx, req)
				return r.GetNetworks(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			sort.Slice(nets, func(i, j int) bool {
				return nets[i].GetSpec().GetAnnotations().GetName() < nets[j].GetSpec().GetAnnotations().GetName()
			})
			switch {
			case lf.quiet:
				printIDs(cmd.OutOrStdout(), nets, (*pb.Network).GetId)
				return nil
			case *format == "json":
				return printJSON(cmd.OutOrStdout(), nets)
			}
			rows := [][]string{{"ID", "NAME", "DRIVER", "SUBNET", "GATEWAY", "VNI", "ATTACHABLE", "LABELS"}}
			for _, n := range nets {
				rows = append(rows, []string{n.GetId(), n.GetSpec().GetAnnotations().GetName(), n.GetSpec().GetDriver(),
					n.GetSubnet(), n.GetGateway(), fmt.Sprint(n.GetVni()), fmt.Sprint(n.GetSpec().GetAttachable()),
					labelString(n.GetSpec().GetAnnotations().GetLabels())})
			}
			return printRows(cmd.OutOrStdout(), *format, rows)
		})
	}
	return cmd
}

func newNetworkRmCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "rm NETWORK [NETWORK...]", Aliases: []string{"remove"}, Short: "Remove networks no service or container uses", Args: cobra.MinimumNArgs(1)}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			for _, id := range args {
				if _, err := c.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: id}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
			}
			return nil
		})
	}
	return cmd
}
