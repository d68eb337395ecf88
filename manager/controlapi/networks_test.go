package controlapi

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

func netSpec(name, subnet string) *pb.CreateNetworkRequest {
	return &pb.CreateNetworkRequest{Spec: &pb.NetworkSpec{Annotations: &pb.Annotations{Name: name}, Subnet: subnet}}
}

func TestCreateNetworkAllocatesSubnetAndVNI(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	a, err := s.CreateNetwork(ctx, netSpec("front", ""))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.CreateNetwork(ctx, netSpec("back", "10.0.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.CreateNetwork(ctx, netSpec("third", ""))
	if err != nil {
		t.Fatal(err)
	}
	got := []string{a.GetNetwork().GetSubnet(), b.GetNetwork().GetSubnet(), c.GetNetwork().GetSubnet()}
	if want := []string{"10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("subnets %v, want %v", got, want)
	}
	if gw := a.GetNetwork().GetGateway(); gw != "10.0.0.1" {
		t.Errorf("gateway %q, want 10.0.0.1", gw)
	}
	vnis := map[uint32]bool{a.GetNetwork().GetVni(): true, b.GetNetwork().GetVni(): true, c.GetNetwork().GetVni(): true}
	if len(vnis) != 3 || a.GetNetwork().GetVni() == 0 {
		t.Errorf("VNIs %v: want three distinct, non-zero", vnis)
	}
	if a.GetNetwork().GetSpec().GetDriver() != "overlay" {
		t.Errorf("driver %q, want overlay", a.GetNetwork().GetSpec().GetDriver())
	}
}

func TestCreateNetworkRefusals(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	if _, err := s.CreateNetwork(ctx, netSpec("back", "10.0.0.0/16")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		req  *pb.CreateNetworkRequest
		code codes.Code
		want string
	}{
		{netSpec("clash", "10.0.3.0/24"), codes.InvalidArgument, `overlaps 10.0.0.0/16 of network "back"`},
		{netSpec("back", ""), codes.AlreadyExists, "back"},
		{netSpec("default", ""), codes.InvalidArgument, "pick another name"},
		{netSpec("bad", "10.0.0.1/24"), codes.InvalidArgument, "host bits"},
		{&pb.CreateNetworkRequest{}, codes.InvalidArgument, "spec"},
	} {
		_, err := s.CreateNetwork(ctx, tc.req)
		if code(err) != tc.code || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CreateNetwork(%v) = %v; want %s mentioning %q", tc.req.GetSpec(), err, tc.code, tc.want)
		}
	}
	// Nothing was written by the refusals: one network, and the cluster's
	// VNI counter moved once.
	st.View(func(tx store.ReadTx) {
		nets, _ := tx.FindNetworks(store.All)
		if len(nets) != 1 || tx.GetCluster("c1").GetLastVni() != nets[0].GetVni() {
			t.Errorf("after refusals: %d networks, last VNI %d", len(nets), tx.GetCluster("c1").GetLastVni())
		}
	})
}

func TestCreateNetworkPoolExhausted(t *testing.T) {
	s, st := newServer(t)
	ctx := context.Background()
	err := st.Update(ctx, func(tx store.Tx) error {
		c := proto.Clone(tx.GetCluster("c1")).(*pb.Cluster)
		c.Spec.AddressPool, c.Spec.AddressPoolMaskLen = "192.168.0.0/23", 24
		return tx.UpdateCluster(c)
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		if _, err := s.CreateNetwork(ctx, netSpec(name, "")); err != nil {
			t.Fatal(err)
		}
	}
	_, err = s.CreateNetwork(ctx, netSpec("c", ""))
	if code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "192.168.0.0/23 has no free /24") {
		t.Fatalf("third network in a /23 pool: %v; want ResourceExhausted naming the pool", err)
	}
	if _, err := s.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "a"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.CreateNetwork(ctx, netSpec("c", ""))
	if err != nil || got.GetNetwork().GetSubnet() != "192.168.0.0/24" {
		t.Fatalf("after removing a: %v, %v; want a's subnet again", got.GetNetwork().GetSubnet(), err)
	}
}

func TestRemoveNetworkNamesEveryServiceUsingIt(t *testing.T) {
	s, _ := newServer(t)
	ctx := context.Background()
	if _, err := s.CreateNetwork(ctx, netSpec("back", "")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"web", "api"} {
		sp := spec(name, 1)
		sp.Networks = []*pb.NetworkAttachment{{Target: "back"}}
		if _, err := s.CreateService(ctx, &pb.CreateServiceRequest{Spec: sp}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "back"})
	if code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "used by services api, web") {
		t.Fatalf("RemoveNetwork = %v; want FailedPrecondition naming api and web", err)
	}
	for _, name := range []string{"web", "api"} {
		if _, err := s.RemoveService(ctx, &pb.RemoveServiceRequest{ServiceId: name}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RemoveNetwork(ctx, &pb.RemoveNetworkRequest{NetworkId: "back"}); err != nil {
		t.Fatalf("removing an unused network: %v", err)
	}
}
