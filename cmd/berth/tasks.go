package main

import (
	"context"
	"slices"

	"github.com/spf13/cobra"

	pb "berth/proto/berth/v1"
)

func newTaskCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "task", Short: "Inspect tasks"}
	cmd.AddCommand(newTaskInspectCmd(g))
	return cmd
}

func newTaskInspectCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "inspect TASK [TASK...]", Short: "Show tasks in detail (JSON, or --format); TASK is an ID or a unique ID prefix", Args: cobra.MinimumNArgs(1)}
	format := addFormatFlag(cmd, "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			var out []*pb.Task
			for _, a := range args {
				r, err := c.GetTask(ctx, &pb.GetTaskRequest{TaskId: a})
				if err != nil {
					return err
				}
				out = append(out, r.GetTask())
			}
			return printObjects(cmd.OutOrStdout(), *format, out)
		})
	}
	return cmd
}

func newNodePsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ps [NODE...]",
		Short: "List the tasks on nodes, with history",
		Long: `List the tasks on the nodes named (ID, name or hostname), or on every node
of the cluster when none is named: berth talks to the managers from afar,
so there is no "self" node as in Docker.`,
	}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "desired-state")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			req, err := taskRequest(ctx, c, lf)
			if err != nil {
				return err
			}
			for _, a := range args {
				n, err := c.GetNode(ctx, &pb.GetNodeRequest{NodeId: a})
				if err != nil {
					return err
				}
				req.NodeIds = append(req.NodeIds, n.GetNode().GetId())
			}
			tasks, err := listTasks(ctx, c, req)
			if err != nil {
				return err
			}
			// A task not placed yet is on no node.
			tasks = slices.DeleteFunc(tasks, func(t *pb.Task) bool { return t.GetNodeId() == "" })
			svcs, err := listAll(ctx, func(ctx context.Context, token string) ([]*pb.Service, string, error) {
				r, err := c.ListServices(ctx, &pb.ListServicesRequest{PageToken: token})
				return r.GetServices(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			byID := map[string]*pb.Service{}
			for _, s := range svcs {
				byID[s.GetId()] = s
			}
			return showTasks(ctx, cmd, c, *format, lf.quiet, tasks, func(id string) *pb.Service { return byID[id] })
		})
	}
	return cmd
}
