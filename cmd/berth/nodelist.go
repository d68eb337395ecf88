package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	pb "berth/proto/berth/v1"
)

var nodeRoles = map[string]pb.NodeSpec_Role{
	"worker":  pb.NodeSpec_ROLE_WORKER,
	"manager": pb.NodeSpec_ROLE_MANAGER,
}

func newNodeLsCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "ls", Aliases: []string{"list"}, Short: "List nodes", Args: cobra.NoArgs}
	format := addFormatFlag(cmd, "table")
	lf := addListFlags(cmd, "id", "name", "role", "membership", "label")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkFormat(*format); err != nil {
			return err
		}
		req, none, err := nodeRequest(lf)
		if err != nil {
			return err
		}
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			var nodes []*pb.Node
			if !none {
				nodes, err = listAll(ctx, func(ctx context.Context, token string) ([]*pb.Node, string, error) {
					req.PageToken = token
					r, err := c.ListNodes(ctx, req)
					return r.GetNodes(), r.GetNextPageToken(), err
				})
				if err != nil {
					return err
				}
			}
			sort.Slice(nodes, func(i, j int) bool {
				return nodes[i].GetDescription().GetHostname() < nodes[j].GetDescription().GetHostname()
			})
			switch {
			case lf.quiet:
				printIDs(cmd.OutOrStdout(), nodes, (*pb.Node).GetId)
				return nil
			case *format == "json":
				return printJSON(cmd.OutOrStdout(), nodes)
			}
			rows := [][]string{{"ID", "HOSTNAME", "STATUS", "AVAILABILITY", "ROLE", "MANAGER STATUS", "ADDRESS", "LABELS"}}
			for _, n := range nodes {
				rows = append(rows, []string{n.GetId(), n.GetDescription().GetHostname(),
					lowerEnum(n.GetStatus().GetState().String(), "STATE_"),
					lowerEnum(n.GetSpec().GetAvailability().String(), "AVAILABILITY_"),
					lowerEnum(n.GetRole().String(), "ROLE_"), managerStatus(n), n.GetDescription().GetAddr(),
					labelString(n.GetSpec().GetAnnotations().GetLabels())})
			}
			return printRows(cmd.OutOrStdout(), *format, rows)
		})
	}
	return cmd
}

// nodeRequest builds node ls's request from its filters. Every berth node
// is accepted into the cluster when it joins (its join token admits it):
// membership=accepted matches all of them and membership=pending none, in
// which case none is true and nothing needs asking.
func nodeRequest(lf *listFlags) (req *pb.ListNodesRequest, none bool, err error) {
	f, err := lf.parse()
	if err != nil {
		return nil, false, err
	}
	req = &pb.ListNodesRequest{Filters: common(f)}
	if req.Roles, err = oneOf("role", f["role"], nodeRoles); err != nil {
		return nil, false, err
	}
	if ms := f["membership"]; len(ms) > 0 {
		none = true
		for _, m := range ms {
			switch strings.ToLower(m) {
			case "accepted":
				none = false
			case "pending":
			default:
				return nil, false, fmt.Errorf("--filter membership=%s: unknown membership; use accepted or pending", m)
			}
		}
	}
	return req, none, nil
}
