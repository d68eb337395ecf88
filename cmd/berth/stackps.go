package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/spf13/cobra"

	pb "berth/proto/berth/v1"
)

func newStackPsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "ps STACK", Short: "List the tasks of a stack, with history", Args: cobra.ExactArgs(1)}
	format := addFormatFlag(cmd, "table")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			svcs, err := stackServices(ctx, c, args[0])
			if err != nil {
				return err
			}
			tasks, err := stackTasks(ctx, c, svcs)
			if err != nil {
				return err
			}
			if *format == "json" {
				return printJSON(cmd.OutOrStdout(), tasks)
			}
			nodes, err := c.ListNodes(ctx, &pb.ListNodesRequest{})
			if err != nil {
				return err
			}
			return printStackTasks(cmd, svcs, tasks, nodes.GetNodes(), time.Now())
		})
	}
	return cmd
}

// printStackTasks is `service ps` over several services: tasks by service
// name, slot (or node, for global services), newest first.
func printStackTasks(cmd *cobra.Command, svcs []*pb.Service, tasks []*pb.Task, nodes []*pb.Node, now time.Time) error {
	names := map[string]string{}
	for _, s := range svcs {
		names[s.GetId()] = s.GetSpec().GetAnnotations().GetName()
	}
	hostnames := map[string]string{}
	for _, n := range nodes {
		hostnames[n.GetId()] = n.GetDescription().GetHostname()
	}
	taskName := func(t *pb.Task) string {
		if t.GetSlot() == 0 {
			return names[t.GetServiceId()] + "." + shortID(t.GetNodeId())
		}
		return fmt.Sprintf("%s.%d", names[t.GetServiceId()], t.GetSlot())
	}
	sort.SliceStable(tasks, func(i, j int) bool {
		a, b := tasks[i], tasks[j]
		if na, nb := names[a.GetServiceId()], names[b.GetServiceId()]; na != nb {
			return na < nb
		}
		if a.GetSlot() != b.GetSlot() {
			return a.GetSlot() < b.GetSlot()
		}
		if a.GetSlot() == 0 && a.GetNodeId() != b.GetNodeId() {
			return a.GetNodeId() < b.GetNodeId()
		}
		return a.GetMeta().GetCreatedAt().AsTime().After(b.GetMeta().GetCreatedAt().AsTime())
	})
	rows := [][]string{{"ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"}}
	prev := ""
	for _, t := range tasks {
		name := taskName(t)
		shown := name
		if name == prev {
			shown = ` \_ ` + name
		}
		prev = name
		state := lowerEnum(t.GetStatus().GetState().String(), "TASK_STATE_")
		if ts := t.GetStatus().GetTimestamp(); ts != nil {
			state += " " + ago(ts.AsTime(), now)
		}
		state += healthNote(t)
		rows = append(rows, []string{shortID(t.GetId()), shown, t.GetSpec().GetContainer().GetImage(), hostnames[t.GetNodeId()],
			lowerEnum(t.GetDesiredState().String(), "TASK_STATE_"), state, taskErr(t)})
	}
	return table(cmd.OutOrStdout(), rows)
}
