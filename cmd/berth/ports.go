package main

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	pb "berth/proto/berth/v1"
)

// portsColumn is a service's published ports as `service ls` and
// `service inspect --pretty` show them: "*:8080->80/tcp". A port
// published as 0 ("any free port") shows the port it was actually given:
// by the managers when they record one on the service, else by the nodes
// running its tasks (each task's status has its node's port; several
// differing ones are all listed). "?" is a port no running task has yet.
func portsColumn(svc *pb.Service, tasks []*pb.Task) string {
	var out []string
	for _, p := range svc.GetSpec().GetEndpoint().GetPorts() {
		pub := strconv.FormatUint(uint64(p.GetPublishedPort()), 10)
		if p.GetPublishedPort() == 0 {
			pub = strings.Join(givenPorts(p, svc, tasks), ",")
		}
		out = append(out, fmt.Sprintf("*:%s->%d/%s", pub, p.GetTargetPort(), lowerEnum(p.GetProtocol().String(), "PROTOCOL_")))
	}
	return strings.Join(out, ",")
}

// givenPorts are the ports a port published as 0 was given, sorted.
func givenPorts(p *pb.PortConfig, svc *pb.Service, tasks []*pb.Task) []string {
	same := func(q *pb.PortConfig) bool {
		return q.GetPublishedPort() != 0 && q.GetTargetPort() == p.GetTargetPort() && q.GetProtocol() == p.GetProtocol() && q.GetPublishMode() == p.GetPublishMode()
	}
	var got []uint32
	for _, q := range svc.GetEndpoint().GetPorts() {
		if same(q) {
			got = append(got, q.GetPublishedPort())
		}
	}
	if len(got) == 0 {
		for _, t := range tasks {
			if t.GetServiceId() != svc.GetId() || t.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			for _, q := range t.GetStatus().GetPorts() {
				if same(q) {
					got = append(got, q.GetPublishedPort())
				}
			}
		}
	}
	slices.Sort(got)
	got = slices.Compact(got)
	if len(got) == 0 {
		return []string{"?"}
	}
	out := make([]string, len(got))
	for i, g := range got {
		out[i] = strconv.FormatUint(uint64(g), 10)
	}
	return out
}

// givenPortTasks lists the running tasks of the services that publish a
// port as 0: their statuses say which port each was given. Services that
// publish none need no task read.
func givenPortTasks(ctx context.Context, c pb.ControlClient, svcs []*pb.Service) ([]*pb.Task, error) {
	req := &pb.ListTasksRequest{DesiredStates: []pb.TaskState{pb.TaskState_TASK_STATE_RUNNING}}
	for _, s := range svcs {
		if slices.ContainsFunc(s.GetSpec().GetEndpoint().GetPorts(), func(p *pb.PortConfig) bool { return p.GetPublishedPort() == 0 }) {
			req.ServiceIds = append(req.ServiceIds, s.GetId())
		}
	}
	if len(req.ServiceIds) == 0 {
		return nil, nil
	}
	return listTasks(ctx, c, req)
}
