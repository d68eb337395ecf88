package agent

import (
	"net/netip"
	"slices"
	"testing"

	"berth/overlay/dataplane"
	pb "berth/proto/berth/v1"
)

// TestPublishedFromEndpoints: an ingress service is published to this
// node's ready tasks when it has some, else to the other nodes running
// ready ones (this node never among them; a task of this node not
// attached here is no backend); a task not ready is nobody's
// backend; a local task's host port goes to it; a container's VIPs are the
// services of its networks only.
func TestPublishedFromEndpoints(t *testing.T) {
	self := netip.MustParseAddr("198.18.0.1")
	o := newOverlay(nil, nil)
	o.self = self
	et := func(id, addr, node string, ready bool) *pb.EndpointTask {
		return &pb.EndpointTask{TaskId: id, Address: addr, NodeAddr: node, Ready: ready}
	}
	ingress8080 := []*pb.PortConfig{{TargetPort: 80, PublishedPort: 8080}}
	o.eps["web/a"] = &pb.ServiceEndpoint{ServiceId: "web", NetworkId: "a", Vip: "10.0.0.2/24", Ports: ingress8080, Tasks: []*pb.EndpointTask{
		et("w1", "10.0.0.5/24", "198.18.0.1", true), et("w2", "10.0.0.6/24", "198.18.0.2", true), et("w3", "10.0.0.7/24", "198.18.0.3", false)}}
	o.eps["api/a"] = &pb.ServiceEndpoint{ServiceId: "api", NetworkId: "a", Ports: []*pb.PortConfig{{TargetPort: 80, PublishedPort: 9090}}, Tasks: []*pb.EndpointTask{
		et("a1", "10.0.0.8/24", "198.18.0.1", true), et("a2", "10.0.0.9/24", "198.18.0.2", true), et("a3", "10.0.0.10/24", "198.18.0.3", true)}}
	o.eps["db/b"] = &pb.ServiceEndpoint{ServiceId: "db", NetworkId: "b", Vip: "10.1.0.2/24", Tasks: []*pb.EndpointTask{et("d1", "10.1.0.5/24", "198.18.0.2", true)}}
	w1 := &pb.Task{Id: "w1", Networks: []*pb.NetworkAttachmentStatus{{NetworkId: "a", Addresses: []string{"10.0.0.5/24"}}}}
	o.ctrs["w1"] = &local{task: w1, addr: netip.MustParseAddr("10.0.0.5"),
		host: []*pb.PortConfig{{TargetPort: 22, PublishedPort: 2222, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST}}}

	addrs := func(s ...string) []netip.Addr {
		var out []netip.Addr
		for _, a := range s {
			out = append(out, netip.MustParseAddr(a))
		}
		return out
	}
	want := []dataplane.Published{
		{ServiceID: "api", Ports: ingressPorts(o.eps["api/a"].Ports), Remote: addrs("198.18.0.2", "198.18.0.3")},
		{ServiceID: "web", Ports: ingressPorts(ingress8080), Local: addrs("10.0.0.5"), Remote: addrs("198.18.0.2")},
		{ServiceID: "task w1", Ports: toPublished(o.ctrs["w1"].host), Local: addrs("10.0.0.5")},
	}
	if got := o.published(); !slices.EqualFunc(got, want, samePublished) {
		t.Errorf("published:\n got %+v\nwant %+v", got, want)
	}
	if got := o.vipsFor(w1); len(got) != 1 || got[0].Addr != netip.MustParseAddr("10.0.0.2") || !slices.Equal(got[0].Backends, addrs("10.0.0.5", "10.0.0.6")) {
		t.Errorf("w1's VIPs %+v; want web's only, with its two ready tasks", got)
	}
}
