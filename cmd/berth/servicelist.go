package main

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	pb "berth/proto/berth/v1"
)

var (
	serviceModes = map[string]pb.ServiceMode{
		"replicated": pb.ServiceMode_SERVICE_MODE_REPLICATED,
		"global":     pb.ServiceMode_SERVICE_MODE_GLOBAL,
	}
	// desiredStates are the desired states Docker's ps filters on.
	desiredStates = map[string]pb.TaskState{
		"running":  pb.TaskState_TASK_STATE_RUNNING,
		"shutdown": pb.TaskState_TASK_STATE_SHUTDOWN,
		"accepted": pb.TaskState_TASK_STATE_ACCEPTED,
	}
)

func newServiceLsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List services", Args: cobra.NoArgs}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "label", "mode")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		f, err := lf.parse()
		if err != nil {
			return err
		}
		req := &pb.ListServicesRequest{Filters: common(f), Status: !lf.quiet}
		if req.Modes, err = oneOf("mode", f["mode"], serviceModes); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			svcs, err := listAll(ctx, func(ctx context.Context, token string) ([]*pb.Service, string, error) {
				req.PageToken = token
				r, err := c.ListServices(ctx, req)
				return r.GetServices(), r.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			sort.Slice(svcs, func(i, j int) bool {
				return svcs[i].GetSpec().GetAnnotations().GetName() < svcs[j].GetSpec().GetAnnotations().GetName()
			})
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

// printServices prints services with the task counts the manager computed.
// tasks are those whose status tells the ports given to ports published
// as 0 (givenPortTasks).
func printServices(cmd *cobra.Command, format string, svcs []*pb.Service, tasks []*pb.Task) error {
	rows := [][]string{{"ID", "NAME", "MODE", "REPLICAS", "IMAGE", "PORTS", "UPDATE"}}
	for _, s := range svcs {
		st := s.GetStatus()
		mode, replicas := "replicated", fmt.Sprintf("%d/%d", st.GetRunningTasks(), st.GetDesiredTasks())
		if s.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_GLOBAL {
			mode = "global"
		}
		rows = append(rows, []string{shortID(s.GetId()), s.GetSpec().GetAnnotations().GetName(), mode, replicas,
			s.GetSpec().GetTask().GetContainer().GetImage(), portsColumn(s, tasks), updateState(s.GetUpdateStatus())})
	}
	return printRows(cmd.OutOrStdout(), format, rows)
}

func newServicePsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "ps SERVICE", Short: "List a service's tasks, with history", Args: cobra.ExactArgs(1)}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "node", "desired-state")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			svc, err := c.GetService(ctx, &pb.GetServiceRequest{ServiceId: args[0]})
			if err != nil {
				return err
			}
			req, err := taskRequest(ctx, c, lf)
			if err != nil {
				return err
			}
			req.ServiceIds = []string{svc.GetService().GetId()}
			tasks, err := listTasks(ctx, c, req)
			if err != nil {
				return err
			}
			return showTasks(ctx, cmd, c, *format, lf.quiet, tasks, func(string) *pb.Service { return svc.GetService() })
		})
	}
	return cmd
}

// taskRequest builds a task list request from ps's filters: node filters
// are resolved to node IDs first.
func taskRequest(ctx context.Context, c pb.ControlClient, lf *listFlags) (*pb.ListTasksRequest, error) {
	f, err := lf.parse()
	if err != nil {
		return nil, err
	}
	req := &pb.ListTasksRequest{Filters: common(f)}
	if req.DesiredStates, err = oneOf("desired-state", f["desired-state"], desiredStates); err != nil {
		return nil, err
	}
	if req.NodeIds, err = nodeIDs(ctx, c, f["node"]); err != nil {
		return nil, err
	}
	return req, nil
}

func listTasks(ctx context.Context, c pb.ControlClient, req *pb.ListTasksRequest) ([]*pb.Task, error) {
	return listAll(ctx, func(ctx context.Context, token string) ([]*pb.Task, string, error) {
		req.PageToken = token
		r, err := c.ListTasks(ctx, req)
		return r.GetTasks(), r.GetNextPageToken(), err
	})
}

// showTasks prints tasks as ps does; service finds a task's service (for
// its name), node hostnames are read for the table only.
func showTasks(ctx context.Context, cmd *cobra.Command, c pb.ControlClient, format string, quiet bool, tasks []*pb.Task, service func(id string) *pb.Service) error {
	sortTasks(tasks)
	switch {
	case quiet:
		printIDs(cmd.OutOrStdout(), tasks, func(t *pb.Task) string { return shortID(t.GetId()) })
		return nil
	case format == "json":
		return printJSON(cmd.OutOrStdout(), tasks)
	}
	nodes, err := listAll(ctx, func(ctx context.Context, token string) ([]*pb.Node, string, error) {
		r, err := c.ListNodes(ctx, &pb.ListNodesRequest{PageToken: token})
		return r.GetNodes(), r.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	return printTasks(cmd, format, service, tasks, nodes, time.Now())
}

// sortTasks orders tasks as ps shows them: by service, slot (or node),
// then newest first.
func sortTasks(tasks []*pb.Task) {
	sort.Slice(tasks, func(i, j int) bool {
		a, b := tasks[i], tasks[j]
		if a.GetServiceId() != b.GetServiceId() {
			return a.GetServiceId() < b.GetServiceId()
		}
		if a.GetSlot() != b.GetSlot() {
			return a.GetSlot() < b.GetSlot()
		}
		if a.GetSlot() == 0 && a.GetNodeId() != b.GetNodeId() {
			return a.GetNodeId() < b.GetNodeId()
		}
		return a.GetMeta().GetCreatedAt().AsTime().After(b.GetMeta().GetCreatedAt().AsTime())
	})
}

func printTasks(cmd *cobra.Command, format string, service func(id string) *pb.Service, tasks []*pb.Task, nodes []*pb.Node, now time.Time) error {
	hostnames := map[string]string{}
	for _, n := range nodes {
		hostnames[n.GetId()] = n.GetDescription().GetHostname()
	}
	rows := [][]string{{"ID", "NAME", "IMAGE", "NODE", "DESIRED STATE", "CURRENT STATE", "ERROR"}}
	prev := ""
	for _, t := range tasks {
		name := service(t.GetServiceId()).GetSpec().GetAnnotations().GetName()
		tname := name + "." + strconv.FormatUint(t.GetSlot(), 10)
		if t.GetSlot() == 0 {
			tname = name + "." + shortID(t.GetNodeId())
		}
		shown := tname
		if tname == prev {
			shown = ` \_ ` + tname
		}
		prev = tname
		state := lowerEnum(t.GetStatus().GetState().String(), "TASK_STATE_")
		if ts := t.GetStatus().GetTimestamp(); ts != nil {
			state += " " + ago(ts.AsTime(), now)
		}
		state += healthNote(t)
		rows = append(rows, []string{shortID(t.GetId()), shown, t.GetSpec().GetContainer().GetImage(), hostnames[t.GetNodeId()],
			lowerEnum(t.GetDesiredState().String(), "TASK_STATE_"), state, taskErr(t)})
	}
	return printRows(cmd.OutOrStdout(), format, rows)
}
