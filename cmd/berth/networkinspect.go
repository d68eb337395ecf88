package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"

	pb "berth/proto/berth/v1"
)

func newNetworkInspectCmd(g *globalOpts) *cobra.Command {
	cmd := &cobra.Command{Use: "inspect NETWORK [NETWORK...]", Short: "Show networks in detail (JSON), with the standalone containers on them", Args: cobra.MinimumNArgs(1)}
	format := addFormatFlag(cmd, "json")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return g.control(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			hosts := hostnames(ctx, c)
			var views []networkView
			for _, a := range args {
				r, err := c.GetNetwork(ctx, &pb.GetNetworkRequest{NetworkId: a})
				if err != nil {
					return err
				}
				views = append(views, networkView{net: r.GetNetwork(), containers: containers(r, hosts)})
			}
			if *format == "json" || *format == "" {
				return printNetworksJSON(cmd, views)
			}
			t, err := parseTemplate(*format)
			if err != nil {
				return err
			}
			for _, v := range views {
				data := templateData(v.net).(map[string]any)
				data["Containers"] = v.containers
				if err := execLine(cmd.OutOrStdout(), t, data); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return cmd
}

// networkView is a network as inspect shows it: the stored object and
// the standalone containers attached to it (Docker's "Containers").
type networkView struct {
	net        *pb.Network
	containers []attachedContainer
}

// attachedContainer is one standalone container on a network.
type attachedContainer struct {
	Name         string `json:"name"`
	Node         string `json:"node"`
	Address      string `json:"address"`
	AttachmentID string `json:"attachment_id"`
}

// containers lists the containers of r's attachments with their address
// on r's network and their node's hostname (its ID when unknown).
func containers(r *pb.GetNetworkResponse, hosts func(string) string) []attachedContainer {
	out := []attachedContainer{}
	for _, t := range r.GetAttachments() {
		c := attachedContainer{Name: t.GetSpec().GetAttachment().GetContainerId(), Node: hosts(t.GetNodeId()), AttachmentID: t.GetId()}
		for _, a := range t.GetNetworks() {
			if a.GetNetworkId() == r.GetNetwork().GetId() && len(a.GetAddresses()) > 0 {
				c.Address = a.GetAddresses()[0]
			}
		}
		out = append(out, c)
	}
	return out
}

// hostnames names nodes by hostname, asking the managers once per node.
func hostnames(ctx context.Context, c pb.ControlClient) func(string) string {
	seen := map[string]string{}
	return func(id string) string {
		if h, ok := seen[id]; ok {
			return h
		}
		h := id
		if r, err := c.GetNode(ctx, &pb.GetNodeRequest{NodeId: id}); err == nil && r.GetNode().GetDescription().GetHostname() != "" {
			h = r.GetNode().GetDescription().GetHostname()
		}
		seen[id] = h
		return h
	}
}

// printNetworksJSON prints each network as the other inspect commands
// print objects, with a "containers" list added at its end.
func printNetworksJSON(cmd *cobra.Command, views []networkView) error {
	raw := make([]json.RawMessage, 0, len(views))
	for _, v := range views {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(v.net)
		if err != nil {
			return err
		}
		cs, err := json.Marshal(v.containers)
		if err != nil {
			return err
		}
		b = bytes.TrimSpace(b)
		b = b[:len(b)-1] // the object's closing brace: the list goes before it
		if len(bytes.TrimSpace(b)) > 1 {
			b = append(b, ',')
		}
		raw = append(raw, append(append(append(b, `"containers":`...), cs...), '}'))
	}
	out, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(cmd.OutOrStdout(), string(out))
	return err
}
