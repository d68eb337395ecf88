package dispatcher

import (
	"cmp"
	"fmt"
	"slices"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// endpoints gathers, while want scans the cluster's tasks, the services on
// the node's networks and their tasks, keyed by service ID + "/" +
// network ID. The node's own tasks count: its DNS server and load balancer
// answer for them too. Services publishing ingress ports count on every
// network: the node's routing mesh forwards to their tasks' nodes.
type endpoints struct {
	tx       store.ReadTx
	nets     map[string]*pb.Network
	nodeAddr func(nodeID string) string
	services map[string]*pb.Service
	out      map[string]*pb.ServiceEndpoint
}

func newEndpoints(tx store.ReadTx, nets map[string]*pb.Network, nodeAddr func(string) string) *endpoints {
	return &endpoints{tx: tx, nets: nets, nodeAddr: nodeAddr, services: map[string]*pb.Service{}, out: map[string]*pb.ServiceEndpoint{}}
}

// service returns service id, looked up once; nil when it is gone.
func (e *endpoints) service(id string) *pb.Service {
	svc, ok := e.services[id]
	if !ok {
		svc = e.tx.GetService(id)
		e.services[id] = svc
	}
	return svc
}

// anyIngress says whether a service publishes an ingress port.
func anyIngress(tx store.ReadTx) bool {
	svcs, _ := tx.FindServices(store.All)
	return slices.ContainsFunc(svcs, publishesIngress)
}

// publishesIngress says whether svc publishes a port on every node.
func publishesIngress(svc *pb.Service) bool {
	return slices.ContainsFunc(publishedPorts(svc), func(p *pb.PortConfig) bool {
		return p.GetPublishMode() == pb.PortConfig_PUBLISH_MODE_INGRESS
	})
}

// add records t behind its service on each of the node's networks it has
// an address on.
func (e *endpoints) add(t *pb.Task) {
	if t.GetSpec().GetAttachment() != nil && onNode(t) {
		e.addAttachment(t)
		return
	}
	if t.GetServiceId() == "" || !onNode(t) {
		return
	}
	for _, a := range t.GetNetworks() {
		if len(a.GetAddresses()) == 0 || e.nets[a.GetNetworkId()] == nil && !publishesIngress(e.service(t.GetServiceId())) {
			continue
		}
		ep := e.endpoint(t.GetServiceId(), a)
		if ep == nil {
			return
		}
		ep.Tasks = append(ep.Tasks, &pb.EndpointTask{TaskId: t.GetId(), Name: dnsName(ep.GetServiceName(), t),
			Address: a.GetAddresses()[0], NodeId: t.GetNodeId(), Ready: ready(t), NodeAddr: e.nodeAddr(t.GetNodeId())})
	}
}

// addAttachment records a standalone container (an attachment task) as
// an endpoint of its own on each of the node's networks it is on, so the
// node's DNS answers its name and aliases: keyed by the task's ID, named
// after the container, in DNSRR mode with that one task. It has no VIP
// and publishes no ports, so load balancing and the routing mesh pass it
// by. While its node is down it is kept (nothing could replace it, and
// its container may well outlive an agent's restart) but not ready: its
// name leaves DNS until the node is back.
func (e *endpoints) addAttachment(t *pb.Task) {
	name := t.GetSpec().GetAttachment().GetContainerId()
	for _, a := range t.GetNetworks() {
		if len(a.GetAddresses()) == 0 || e.nets[a.GetNetworkId()] == nil {
			continue
		}
		e.out[t.GetId()+"/"+a.GetNetworkId()] = &pb.ServiceEndpoint{ServiceId: t.GetId(), ServiceName: name,
			NetworkId: a.GetNetworkId(), Mode: pb.EndpointSpec_MODE_DNSRR, Aliases: slices.Clone(a.GetAliases()),
			Tasks: []*pb.EndpointTask{{TaskId: t.GetId(), Name: name, Address: a.GetAddresses()[0], NodeId: t.GetNodeId(),
				Ready: ready(t) && !nodeDown(e.tx.GetNode(t.GetNodeId())), NodeAddr: e.nodeAddr(t.GetNodeId())}}}
	}
}

// endpoint returns the entry of service id on a's network, making it on
// first use; nil when the service is gone.
func (e *endpoints) endpoint(id string, a *pb.NetworkAttachmentStatus) *pb.ServiceEndpoint {
	key := id + "/" + a.GetNetworkId()
	if ep, ok := e.out[key]; ok {
		return ep
	}
	svc := e.service(id)
	if svc == nil {
		return nil
	}
	ep := &pb.ServiceEndpoint{ServiceId: id, ServiceName: svc.GetSpec().GetAnnotations().GetName(),
		NetworkId: a.GetNetworkId(), Mode: svc.GetSpec().GetEndpoint().GetMode(),
		Aliases: slices.Clone(a.GetAliases()), Ports: publishedPorts(svc)}
	for _, v := range svc.GetEndpoint().GetVirtualIps() {
		if v.GetNetworkId() == a.GetNetworkId() && ep.Mode == pb.EndpointSpec_MODE_VIP {
			ep.Vip = v.GetAddr()
		}
	}
	e.out[key] = ep
	return ep
}

// done sorts each entry's tasks so that equal views compare equal.
func (e *endpoints) done() map[string]*pb.ServiceEndpoint {
	for _, ep := range e.out {
		slices.SortFunc(ep.Tasks, func(a, b *pb.EndpointTask) int { return cmp.Compare(a.GetTaskId(), b.GetTaskId()) })
	}
	return e.out
}

// publishedPorts are the ports the allocator gave the service, or its
// spec's while it has given none.
func publishedPorts(svc *pb.Service) []*pb.PortConfig {
	if ps := svc.GetEndpoint().GetPorts(); len(ps) > 0 {
		return ps
	}
	return svc.GetSpec().GetEndpoint().GetPorts()
}

// dnsName is a task's name as Swarm gives it: SERVICE.SLOT.TASKID, or
// SERVICE.NODEID.TASKID for a global service's task.
func dnsName(service string, t *pb.Task) string {
	if t.GetSlot() == 0 {
		return fmt.Sprintf("%s.%s.%s", service, t.GetNodeId(), t.GetId())
	}
	return fmt.Sprintf("%s.%d.%s", service, t.GetSlot(), t.GetId())
}

// ready says whether t may take traffic: running, and healthy if it has a
// health check.
func ready(t *pb.Task) bool {
	if t.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING || t.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING {
		return false
	}
	h := t.GetStatus().GetContainer().GetHealth()
	return h == pb.ContainerStatus_HEALTH_NONE || h == pb.ContainerStatus_HEALTH_HEALTHY
}
