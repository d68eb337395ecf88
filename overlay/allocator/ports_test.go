package allocator

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// TestIngressPortZeroGetsANodePort: `-p 0:80` in ingress mode gets the
// lowest node port no service publishes, the same for the service's
// tasks, kept across a spec update and a new leader term; host mode keeps
// 0 (each node picks its own).
func TestIngressPortZeroGetsANodePort(t *testing.T) {
	st := newStore(t)
	withPorts := func(s *pb.Service, ports ...*pb.PortConfig) *pb.Service {
		s.Spec.Endpoint = &pb.EndpointSpec{Ports: ports}
		return s
	}
	taken := withPorts(service("taken"), &pb.PortConfig{TargetPort: 80, PublishedPort: minNodePort})
	web := withPorts(service("web"), &pb.PortConfig{TargetPort: 80},
		&pb.PortConfig{TargetPort: 81, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST})
	api := withPorts(service("api"), &pb.PortConfig{TargetPort: 80})
	create(t, st, taken, web, api, pendingTask("web", 1))
	stop := start(t, st)
	tk := waitAllocated(t, st, "web.1")["web.1"]
	got := func(id string) []uint32 {
		var out []uint32
		for _, p := range getService(st, id).GetEndpoint().GetPorts() {
			out = append(out, p.GetPublishedPort())
		}
		return out
	}
	await.True(t, 5*time.Second, func() bool { return len(got("api")) == 1 && got("api")[0] != 0 }, "api got no port")
	w, a := got("web"), got("api")
	if w[0] == a[0] || !slices.Contains([]uint32{minNodePort + 1, minNodePort + 2}, w[0]) || !slices.Contains([]uint32{minNodePort + 1, minNodePort + 2}, a[0]) {
		t.Fatalf("web got %v, api %v: want distinct ports after %d (taken)", w, a, minNodePort)
	}
	if w[1] != 0 {
		t.Errorf("web's host-mode port 0 became %d; each node picks it", w[1])
	}
	if p := tk.GetEndpoint().GetPorts(); len(p) != 2 || p[0].GetPublishedPort() != w[0] {
		t.Errorf("the task carries ports %v, want the service's %v", p, w)
	}

	// A spec update and a new term keep the port.
	stop()
	update(t, st, func(tx store.Tx) error {
		s := proto.Clone(tx.GetService("web")).(*pb.Service)
		s.Spec.Endpoint.Ports = append(s.Spec.Endpoint.Ports, &pb.PortConfig{TargetPort: 82})
		return tx.UpdateService(s)
	})
	start(t, st)
	await.True(t, 5*time.Second, func() bool { return len(got("web")) == 3 && got("web")[2] != 0 }, "web's new port got none")
	if now := got("web"); now[0] != w[0] || now[2] != minNodePort+3 {
		t.Errorf("after an update web has %v; want %d kept and %d for the new one", now, w[0], minNodePort+3)
	}
}
