package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "berth/proto/berth/v1"
)

func newClusterUpdateCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "update [OPTIONS]",
		Short: "Change cluster-wide settings",
		Long: `update changes the cluster's settings. --heartbeat-period is how often agents
heartbeat; a node silent for three periods goes down. Agents take a new
period at their next heartbeat.`,
		Args: cobra.NoArgs,
	}
	period := cmd.Flags().Duration("heartbeat-period", 0, "how often agents heartbeat (100ms to 1m), such as 5s")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !cmd.Flags().Changed("heartbeat-period") {
			return errors.New("nothing to change: give --heartbeat-period")
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			spec, err := updateCluster(ctx, c, func(s *pb.ClusterSpec) { s.HeartbeatPeriod = durationpb.New(*period) })
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "heartbeat period: %s\n", spec.GetHeartbeatPeriod().AsDuration())
			return nil
		})
	}
	return cmd
}

// updateCluster reads the cluster, lets edit change its spec and writes
// it back, reading again when the cluster moved on meanwhile (a gossip
// key rotation changes its version too). It returns the spec written.
func updateCluster(ctx context.Context, c pb.ControlClient, edit func(*pb.ClusterSpec)) (*pb.ClusterSpec, error) {
	for try := 0; ; try++ {
		cur, err := c.GetCluster(ctx, &pb.GetClusterRequest{})
		if err != nil {
			return nil, err
		}
		spec := proto.Clone(cur.GetCluster().GetSpec()).(*pb.ClusterSpec)
		edit(spec)
		resp, err := c.UpdateCluster(ctx, &pb.UpdateClusterRequest{ClusterVersion: cur.GetCluster().GetMeta().GetVersion(), Spec: spec})
		if status.Code(err) == codes.Aborted && try < 5 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return resp.GetCluster().GetSpec(), nil
	}
}
