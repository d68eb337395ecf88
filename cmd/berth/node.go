package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

func newNodeCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "node", Short: "Manage nodes"}
	cmd.AddCommand(newNodeLsCmd(g), newNodeInspectCmd(g), newNodeUpdateCmd(g),
		newNodeRoleCmd(g, "promote", pb.NodeSpec_ROLE_MANAGER), newNodeRoleCmd(g, "demote", pb.NodeSpec_ROLE_WORKER), newNodeRmCmd(g), newNodePsCmd(g))
	return cmd
}

func managerStatus(n *pb.Node) string {
	ms := n.GetManagerStatus()
	if ms == nil {
		return ""
	}
	if ms.GetLeader() {
		return "leader"
	}
	return lowerEnum(ms.GetReachability().String(), "REACHABILITY_")
}

func labelString(m map[string]string) string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return strings.Join(out, ",")
}

func newNodeInspectCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "inspect NODE [NODE...]", Short: "Show nodes in detail (JSON, or --format)", Args: cobra.MinimumNArgs(1)}
	format := addFormatFlag(cmd, "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			var out []*pb.Node
			for _, a := range args {
				r, err := c.GetNode(ctx, &pb.GetNodeRequest{NodeId: a})
				if err != nil {
					return err
				}
				out = append(out, r.GetNode())
			}
			return printObjects(cmd.OutOrStdout(), *format, out)
		})
	}
	return cmd
}

// updateNode reads a node, lets edit change its spec and writes it back.
// A node's version also moves when its agent reports status, so a write
// refused as out of sequence (Aborted) is read and edited again: edit is
// a function of the spec alone, and the spec it saw may simply be stale.
func updateNode(ctx context.Context, c pb.ControlClient, id string, edit func(*pb.NodeSpec) error) error {
	var err error
	for try := 0; try < 5; try++ {
		if err = updateNodeOnce(ctx, c, id, edit); status.Code(err) != codes.Aborted {
			return err
		}
	}
	return err
}

func updateNodeOnce(ctx context.Context, c pb.ControlClient, id string, edit func(*pb.NodeSpec) error) error {
	r, err := c.GetNode(ctx, &pb.GetNodeRequest{NodeId: id})
	if err != nil {
		return err
	}
	n := r.GetNode()
	spec := proto.Clone(n.GetSpec()).(*pb.NodeSpec)
	if spec.Annotations == nil {
		spec.Annotations = &pb.Annotations{}
	}
	if err := edit(spec); err != nil {
		return err
	}
	_, err = c.UpdateNode(ctx, &pb.UpdateNodeRequest{NodeId: n.GetId(), NodeVersion: n.GetMeta().GetVersion(), Spec: spec})
	return err
}

func newNodeUpdateCmd(g *globalOpts) *cobra.Command {
	var availability string
	var lblAdd, lblRm []string
	cmd := &cobra.Command{Use: "update [OPTIONS] NODE", Short: "Change a node's availability or labels", Args: cobra.ExactArgs(1)}
	cmd.Flags().StringVar(&availability, "availability", "", "active, pause or drain")
	cmd.Flags().StringArrayVar(&lblAdd, "label-add", nil, "add or change a label key=value")
	cmd.Flags().StringArrayVar(&lblRm, "label-rm", nil, "remove a label")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			err := updateNode(ctx, c, args[0], func(s *pb.NodeSpec) error {
				if availability != "" {
					a, err := enumFlag[pb.NodeSpec_Availability]("availability", availability, "AVAILABILITY_", pb.NodeSpec_Availability_value)
					if err != nil {
						return err
					}
					s.Availability = a
				}
				var err error
				s.Annotations.Labels, err = editMap(s.Annotations.Labels, lblAdd, lblRm, "label")
				return err
			})
			if err == nil {
				fmt.Fprintln(cmd.OutOrStdout(), args[0])
			}
			return err
		})
	}
	return cmd
}

func newNodeRoleCmd(g *globalOpts, verb string, role pb.NodeSpec_Role) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NODE [NODE...]",
		Short: fmt.Sprintf("%s nodes (%s)", strings.ToUpper(verb[:1])+verb[1:], lowerEnum(role.String(), "ROLE_")),
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				for _, id := range args {
					if err := updateNode(ctx, c, id, func(s *pb.NodeSpec) error { s.DesiredRole = role; return nil }); err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "node %s %sd\n", id, verb)
				}
				return nil
			})
		},
	}
}

// removedNote tells what removing a node did beyond the listing.
const removedNote = `Managers refuse a removed node's certificate from now on, and the
cluster's gossip key rotates. To bring the host back, join it again with
a token (berth cluster join-token worker).
`

func newNodeRmCmd(g *globalOpts) *cobra.Command {
	var force bool
	cmd := &cobra.Command{Use: "rm NODE [NODE...]", Aliases: []string{"remove"}, Short: "Remove nodes from the cluster", Args: cobra.MinimumNArgs(1)}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove a node that is not down")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			for i, id := range args {
				if _, err := c.RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: id, Force: force}); err != nil {
					if i > 0 {
						fmt.Fprint(cmd.ErrOrStderr(), removedNote)
					}
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), id)
			}
			fmt.Fprint(cmd.ErrOrStderr(), removedNote)
			return nil
		})
	}
	return cmd
}
