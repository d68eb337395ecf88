package e2ecluster

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// NodeInfo is one row of `berth node ls`.
type NodeInfo struct {
	ID, Hostname, Status, Availability, Role string
	Node                                     *pb.Node
}

// Nodes lists the cluster's nodes through the CLI.
func (c *Cluster) Nodes(ctx context.Context) ([]NodeInfo, error) {
	var out []NodeInfo
	err := listJSON(ctx, c, func() proto.Message { return &pb.Node{} }, func(m proto.Message) {
		n := m.(*pb.Node)
		out = append(out, NodeInfo{
			ID: n.GetId(), Hostname: n.GetDescription().GetHostname(), Node: n,
			Status:       lower(n.GetStatus().GetState().String(), "STATE_"),
			Availability: lower(n.GetSpec().GetAvailability().String(), "AVAILABILITY_"),
			Role:         lower(n.GetRole().String(), "ROLE_"),
		})
	}, "node", "ls", "--format", "json")
	return out, err
}

// NodeByName finds the node whose hostname is name.
func (c *Cluster) NodeByName(ctx context.Context, name string) (NodeInfo, error) {
	nodes, err := c.Nodes(ctx)
	if err != nil {
		return NodeInfo{}, err
	}
	for _, n := range nodes {
		if n.Hostname == name {
			return n, nil
		}
	}
	return NodeInfo{}, fmt.Errorf("no node named %s", name)
}

// Tasks lists a service's tasks (all of its history) through the CLI.
func (c *Cluster) Tasks(ctx context.Context, service string) ([]*pb.Task, error) {
	var out []*pb.Task
	err := listJSON(ctx, c, func() proto.Message { return &pb.Task{} }, func(m proto.Message) {
		out = append(out, m.(*pb.Task))
	}, "service", "ps", service, "--format", "json")
	return out, err
}

// Running counts the tasks desired and observed running, by node ID.
func Running(tasks []*pb.Task) (total int, byNode map[string]int) {
	byNode = map[string]int{}
	for _, t := range tasks {
		if t.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			total++
			byNode[t.GetNodeId()]++
		}
	}
	return total, byNode
}

func listJSON(ctx context.Context, c *Cluster, mk func() proto.Message, add func(proto.Message), args ...string) error {
	out, err := c.CLI(ctx, args...)
	if err != nil {
		return err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return fmt.Errorf("berth %s: output is not a JSON list: %w", strings.Join(args, " "), err)
	}
	for _, r := range raw {
		m := mk()
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r, m); err != nil {
			return err
		}
		add(m)
	}
	return nil
}

func lower(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }

// Service reads one service through the CLI (`service inspect`).
func (c *Cluster) Service(ctx context.Context, name string) (*pb.Service, error) {
	var out []*pb.Service
	err := listJSON(ctx, c, func() proto.Message { return &pb.Service{} }, func(m proto.Message) {
		out = append(out, m.(*pb.Service))
	}, "service", "inspect", name)
	if err == nil && len(out) != 1 {
		err = fmt.Errorf("service inspect %s: %d services", name, len(out))
	}
	if err != nil {
		return nil, err
	}
	return out[0], nil
}
