package scheduler

import (
	"strconv"

	pb "berth/proto/berth/v1"
)

// hostPort is a host-mode published port: what two tasks on one node may not share.
type hostPort struct {
	proto pb.PortConfig_Protocol
	port  uint32
}

func (p hostPort) String() string {
	proto := "tcp"
	if p.proto == pb.PortConfig_PROTOCOL_UDP {
		proto = "udp"
	}
	return strconv.FormatUint(uint64(p.port), 10) + "/" + proto
}

// nodeInfo is one node as the scheduler sees it: the attributes filters read,
// flattened once, and the counters placement keeps up to date.
type nodeInfo struct {
	node     *pb.Node
	id       string
	hostname string
	role     string
	os       string
	arch     string
	labels   map[string]string
	state    pb.NodeStatus_State
	avail    pb.NodeSpec_Availability

	cpuCap, memCap   int64 // what the node reports
	cpuUsed, memUsed int64 // what live tasks on it reserve
	total            int32 // live tasks on the node
	services         map[string]int32
	ports            map[hostPort]struct{}

	// rank is the node's place in ID order: ties break on it, cheaper
	// than comparing IDs.
	rank int32

	// mark is scratch for the group being placed: its service's task count
	// here, so the scan over nodes reads no map.
	mark int32
}

func newNodeInfo(n *pb.Node) *nodeInfo {
	d := n.GetDescription()
	role := "worker"
	if n.GetRole() == pb.NodeSpec_ROLE_MANAGER {
		role = "manager"
	}
	return &nodeInfo{
		node:     n,
		id:       n.GetId(),
		hostname: d.GetHostname(),
		role:     role,
		os:       d.GetPlatform().GetOs(),
		arch:     d.GetPlatform().GetArchitecture(),
		labels:   n.GetSpec().GetAnnotations().GetLabels(),
		state:    n.GetStatus().GetState(),
		avail:    n.GetSpec().GetAvailability(),
		cpuCap:   d.GetResources().GetNanoCpus(),
		memCap:   d.GetResources().GetMemoryBytes(),
		services: map[string]int32{},
	}
}

// holdsResources reports whether an assigned task still occupies its node:
// one that finished (complete, failed, ...) holds nothing.
func holdsResources(t *pb.Task) bool {
	return t.GetStatus().GetState() <= pb.TaskState_TASK_STATE_RUNNING
}

// add accounts t as running on the node.
func (n *nodeInfo) add(t *pb.Task) {
	r := t.GetSpec().GetResources().GetReservations()
	n.cpuUsed += r.GetNanoCpus()
	n.memUsed += r.GetMemoryBytes()
	n.total++
	n.services[t.GetServiceId()]++
	for _, p := range taskHostPorts(t) {
		if n.ports == nil {
			n.ports = map[hostPort]struct{}{}
		}
		n.ports[p] = struct{}{}
	}
}

// load is how full the node is, for binpack: the sum of the reserved
// fractions of each resource the node reports.
func (n *nodeInfo) load() float64 {
	var l float64
	if n.cpuCap > 0 {
		l += float64(n.cpuUsed) / float64(n.cpuCap)
	}
	if n.memCap > 0 {
		l += float64(n.memUsed) / float64(n.memCap)
	}
	return l
}

// label returns the node's value for a preference descriptor such as
// node.labels.zone; a node without it gets "".
func (n *nodeInfo) label(descriptor string) string {
	switch descriptor {
	case "node.id":
		return n.id
	case "node.hostname":
		return n.hostname
	case "node.role":
		return n.role
	case "node.platform.os":
		return n.os
	case "node.platform.arch":
		return n.arch
	}
	if len(descriptor) > len(labelPrefix) && descriptor[:len(labelPrefix)] == labelPrefix {
		return n.labels[descriptor[len(labelPrefix):]]
	}
	return ""
}

// taskHostPorts lists the host-mode published ports t binds on its node.
// Port 0 asks the node for any free port and never conflicts.
func taskHostPorts(t *pb.Task) []hostPort {
	ep := t.GetEndpoint()
	if ep == nil {
		return nil
	}
	var out []hostPort
	collect := func(ports []*pb.PortConfig) {
		for _, p := range ports {
			if p.GetPublishMode() != pb.PortConfig_PUBLISH_MODE_HOST || p.GetPublishedPort() == 0 {
				continue
			}
			hp := hostPort{p.GetProtocol(), p.GetPublishedPort()}
			if !containsPort(out, hp) {
				out = append(out, hp)
			}
		}
	}
	collect(ep.GetSpec().GetPorts())
	collect(ep.GetPorts())
	return out
}

func containsPort(ps []hostPort, p hostPort) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}
