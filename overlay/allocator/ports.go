package allocator

import (
	"fmt"

	pb "berth/proto/berth/v1"
)

// An ingress port published as 0 gets a port of the node-port range, as
// Swarm gives one (30000-32767): the port is the same on every node (the
// routing mesh answers on it everywhere), so the leader picks it, once,
// and the service keeps it across updates and leader changes (it is
// stored in the service's endpoint). Host-mode ports published as 0 are
// picked by each node instead, where the task runs.
const (
	minNodePort = 30000
	maxNodePort = 32767
)

type portKey struct {
	port  uint32
	proto pb.PortConfig_Protocol
}

// takenPorts lists the ports services publish, ingress or host, as specs
// ask or as the allocator gave them.
func (s *state) takenPorts() map[portKey]bool {
	used := map[portKey]bool{}
	for _, svc := range s.services {
		for _, ps := range [][]*pb.PortConfig{svc.GetSpec().GetEndpoint().GetPorts(), svc.GetEndpoint().GetPorts()} {
			for _, p := range ps {
				if p.GetPublishedPort() != 0 {
					used[portKey{p.GetPublishedPort(), p.GetProtocol()}] = true
				}
			}
		}
	}
	return used
}

// givePorts fills in each ingress port of ports published as 0 (ports is
// svc's endpoint being planned): with the port svc was given before, else
// with the lowest port of the range no service publishes. used is the
// round's view of taken ports; it grows with what is given.
func givePorts(svc *pb.Service, ports []*pb.PortConfig, used map[portKey]bool) error {
	had := svc.GetEndpoint().GetPorts()
	for i, p := range ports {
		if p.GetPublishedPort() != 0 || p.GetPublishMode() != pb.PortConfig_PUBLISH_MODE_INGRESS {
			continue
		}
		if port := givenBefore(p, had); port != 0 {
			p.PublishedPort = port
			continue
		}
		port := uint32(minNodePort)
		for ; port <= maxNodePort && used[portKey{port, p.GetProtocol()}]; port++ {
		}
		if port > maxNodePort {
			return fmt.Errorf("ports[%d]: every port of %d-%d is published; publish this one on a port of your choice", i, minNodePort, maxNodePort)
		}
		p.PublishedPort = port
		used[portKey{port, p.GetProtocol()}] = true
	}
	return nil
}

// givenBefore is the port an earlier endpoint gave a port like p, or 0.
func givenBefore(p *pb.PortConfig, had []*pb.PortConfig) uint32 {
	for _, h := range had {
		if h.GetTargetPort() == p.GetTargetPort() && h.GetProtocol() == p.GetProtocol() &&
			h.GetPublishMode() == p.GetPublishMode() && h.GetPublishedPort() >= minNodePort && h.GetPublishedPort() <= maxNodePort {
			return h.GetPublishedPort()
		}
	}
	return 0
}
