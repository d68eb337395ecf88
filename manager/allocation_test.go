package manager

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"google.golang.org/protobuf/proto"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestAddressesSurviveFailoverAndRestart: addresses the allocator gave
// stay with their tasks and services across a leader change and a restart
// of every manager, and new ones never repeat them.
func TestAddressesSurviveFailoverAndRestart(t *testing.T) {
	c := newTestCluster(t, 3)
	ctx := ctxFor(t, 6*settle)
	cc := c.follower().control()
	if _, err := cc.CreateNetwork(ctx, &pb.CreateNetworkRequest{Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "back"}}}); err != nil {
		t.Fatal(err)
	}
	web := serviceSpec("web")
	web.Replicas = proto.Int64(3)
	web.Networks = []*pb.NetworkAttachment{{Target: "back"}}
	if _, err := cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: web}); err != nil {
		t.Fatal(err)
	}
	if _, err := cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: serviceSpec("plain")}); err != nil {
		t.Fatal(err)
	}
	first := waitAddresses(t, ctx, cc, 4+2) // 4 tasks, 2 VIPs

	old := c.waitLeader()
	old.stop()
	if c.waitLeader() == old {
		t.Fatal("the stopped manager still leads")
	}
	scale(t, ctx, c.follower().control(), "web", 5)
	second := waitAddresses(t, ctx, c.follower().control(), 6+2)
	keeps(t, first, second)

	for _, tm := range c.mgrs {
		tm.stop()
	}
	for _, tm := range c.mgrs {
		tm.cfg.Join, tm.cfg.Token = nil, ""
		if err := tm.launch(); err != nil {
			t.Fatal(err)
		}
	}
	for _, tm := range c.mgrs {
		if err := tm.waitReady(); err != nil {
			t.Fatalf("restart %s: %v", tm.name, err)
		}
	}
	c.waitLeader()
	cc = c.follower().control()
	scale(t, ctx, cc, "plain", 3)
	third := waitAddresses(t, ctx, cc, 8+2)
	keeps(t, second, third)
}

// waitAddresses waits until every running-desired task has its addresses
// and there are n holders in all (tasks and VIPs); it fails on an address
// held twice, and returns holder → addresses.
func waitAddresses(t *testing.T, ctx context.Context, cc pb.ControlClient, n int) map[string]string {
	t.Helper()
	var got map[string]string
	await.NoError(t, 2*settle, func() error {
		var err error
		got, err = holders(ctx, cc)
		if err == nil && len(got) != n {
			err = fmt.Errorf("%d holders, want %d: %v", len(got), n, got)
		}
		return err
	}, "every task and service has its addresses")
	return got
}

func holders(ctx context.Context, cc pb.ControlClient) (map[string]string, error) {
	out := map[string]string{}
	byAddr := map[string]string{}
	claim := func(owner, netID, addr string) error {
		p, err := netip.ParsePrefix(addr)
		if err != nil {
			return fmt.Errorf("%s: address %q: %w", owner, addr, err)
		}
		key := netID + " " + p.Addr().String()
		if other, ok := byAddr[key]; ok && other != owner {
			return fmt.Errorf("FATAL %s held by %s and %s", key, other, owner)
		}
		byAddr[key] = owner
		out[owner] += key + ";"
		return nil
	}
	svcs, err := cc.ListServices(ctx, &pb.ListServicesRequest{})
	if err != nil {
		return nil, err
	}
	for _, s := range svcs.GetServices() {
		for _, v := range s.GetEndpoint().GetVirtualIps() {
			if err := claim("vip "+s.GetSpec().GetAnnotations().GetName(), v.GetNetworkId(), v.GetAddr()); err != nil {
				return nil, err
			}
		}
	}
	tasks, err := cc.ListTasks(ctx, &pb.ListTasksRequest{DesiredStates: []pb.TaskState{pb.TaskState_TASK_STATE_RUNNING}})
	if err != nil {
		return nil, err
	}
	for _, tk := range tasks.GetTasks() {
		if len(tk.GetNetworks()) == 0 {
			return nil, fmt.Errorf("task %s has no address yet", tk.GetId())
		}
		for _, a := range tk.GetNetworks() {
			for _, addr := range a.GetAddresses() {
				if err := claim(tk.GetId(), a.GetNetworkId(), addr); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// keeps fails when a holder of before lost or changed its addresses.
func keeps(t *testing.T, before, after map[string]string) {
	t.Helper()
	for owner, addrs := range before {
		if after[owner] != addrs {
			t.Errorf("%s held %s, now %q", owner, addrs, after[owner])
		}
	}
}

func scale(t *testing.T, ctx context.Context, cc pb.ControlClient, name string, replicas int64) {
	t.Helper()
	await.NoError(t, settle, func() error {
		r, err := cc.GetService(ctx, &pb.GetServiceRequest{ServiceId: name})
		if err != nil {
			return err
		}
		spec := proto.Clone(r.GetService().GetSpec()).(*pb.ServiceSpec)
		spec.Replicas = proto.Int64(replicas)
		_, err = cc.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: r.GetService().GetId(),
			ServiceVersion: r.GetService().GetMeta().GetVersion(), Spec: spec})
		return err
	}, "scale %s to %d", name, replicas)
}
