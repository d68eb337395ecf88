package main

import (
	"context"

	"github.com/spf13/cobra"

	pb "berth/proto/berth/v1"
)

func newStackPsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "ps STACK", Short: "List the tasks of a stack, with history", Args: cobra.ExactArgs(1)}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "node", "desired-state")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			svcs, err := stackServices(ctx, c, &pb.ListServicesRequest{Filters: inStack(&pb.ListFilters{}, args[0])}, args[0])
			if err != nil {
				return err
			}
			req, err := taskRequest(ctx, c, lf)
			if err != nil {
				return err
			}
			byID := map[string]*pb.Service{}
			for _, s := range svcs {
				req.ServiceIds = append(req.ServiceIds, s.GetId())
				byID[s.GetId()] = s
			}
			tasks, err := listTasks(ctx, c, req)
			if err != nil {
				return err
			}
			return showTasks(ctx, cmd, c, *format, lf.quiet, tasks, func(id string) *pb.Service { return byID[id] })
		})
	}
	return cmd
}
