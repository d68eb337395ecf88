package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	pb "berth/proto/berth/v1"
)

func newClusterCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "cluster", Short: "Cluster-wide information and join tokens"}
	cmd.AddCommand(newClusterInfoCmd(g), newJoinTokenCmd(g), newClusterUpdateCmd(g))
	return cmd
}

func newClusterInfoCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "info", Short: "Show the cluster and its managers", Args: cobra.NoArgs}
	format := addFormatFlag(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			r, err := c.GetCluster(ctx, &pb.GetClusterRequest{})
			if err != nil {
				return err
			}
			if *format != "table" {
				return printObjects(cmd.OutOrStdout(), *format, []*pb.GetClusterResponse{r})
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "Cluster ID:    %s\nLeader:        %s\nCommit index:  %d\nCA hash:       %s\nHeartbeat:     %s\nManagers:\n",
				r.GetCluster().GetId(), r.GetLeaderAddr(), r.GetCommitIndex(), r.GetCluster().GetRootCa().GetCaCertHash(),
				r.GetCluster().GetSpec().GetHeartbeatPeriod().AsDuration())
			rows := [][]string{{"  NODE", "ADDRESS", "VOTER", "STATUS"}}
			for _, m := range r.GetMembers() {
				st := lowerEnum(m.GetReachability().String(), "REACHABILITY_")
				if m.GetLeader() {
					st = "leader"
				}
				rows = append(rows, []string{"  " + m.GetNodeId(), m.GetAddr(), fmt.Sprint(m.GetVoter()), st})
			}
			return table(w, rows)
		})
	}
	return cmd
}

func newJoinTokenCmd(g *globalOpts) *cobra.Command {
	var rotate, quiet bool
	cmd := &cobra.Command{
		Use:       "join-token worker|manager",
		Short:     "Show (or rotate) the token a node joins with",
		Args:      cobra.ExactArgs(1),
		ValidArgs: []string{"worker", "manager"},
	}
	cmd.Flags().BoolVar(&rotate, "rotate", false, "replace the token; the old one no longer admits new nodes")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print the token only")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var role pb.NodeSpec_Role
		switch args[0] {
		case "worker":
			role = pb.NodeSpec_ROLE_WORKER
		case "manager":
			role = pb.NodeSpec_ROLE_MANAGER
		default:
			return fmt.Errorf("%q: say worker or manager", args[0])
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			if rotate {
				cl, err := c.GetCluster(ctx, &pb.GetClusterRequest{})
				if err != nil {
					return err
				}
				if _, err := c.UpdateCluster(ctx, &pb.UpdateClusterRequest{
					ClusterVersion:     cl.GetCluster().GetMeta().GetVersion(),
					Spec:               cl.GetCluster().GetSpec(),
					RotateWorkerToken:  role == pb.NodeSpec_ROLE_WORKER,
					RotateManagerToken: role == pb.NodeSpec_ROLE_MANAGER,
				}); err != nil {
					return err
				}
			}
			r, err := c.GetJoinToken(ctx, &pb.GetJoinTokenRequest{Role: role})
			if err != nil {
				return err
			}
			if quiet {
				fmt.Fprintln(cmd.OutOrStdout(), r.GetToken())
				return nil
			}
			bin, flag := "berth-agent", "--join"
			if role == pb.NodeSpec_ROLE_MANAGER {
				bin = "berth-manager --data-dir DIR --listen-addr IP:4242"
			}
			fmt.Fprintf(cmd.OutOrStdout(), "To add a %s to this cluster, run:\n\n    %s %s %s --token %s\n\n",
				args[0], bin, flag, strings.Join(r.GetManagerAddrs(), ","), r.GetToken())
			return nil
		})
	}
	return cmd
}
