package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func TestNextSubnetCarvesThePoolInOrder(t *testing.T) {
	pool := netip.MustParsePrefix("10.0.0.0/8")
	var used []Used
	for i := 0; i < 3; i++ {
		p, err := NextSubnet(pool, 24, used)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("10.0.%d.0/24", i); p.String() != want {
			t.Fatalf("subnet %d = %s, want %s", i, p, want)
		}
		used = append(used, Used{Prefix: p, Owner: fmt.Sprint(i)})
	}
}

func TestNextSubnetSkipsUserSubnets(t *testing.T) {
	pool := netip.MustParsePrefix("10.0.0.0/8")
	used := []Used{
		{Prefix: netip.MustParsePrefix("10.0.0.0/16"), Owner: "big"},    // larger than a /24
		{Prefix: netip.MustParsePrefix("10.1.0.128/25"), Owner: "half"}, // inside a /24
	}
	p, err := NextSubnet(pool, 24, used)
	if err != nil {
		t.Fatal(err)
	}
	if p.String() != "10.1.1.0/24" {
		t.Fatalf("got %s, want 10.1.1.0/24 (past both user subnets)", p)
	}
}

func TestNextSubnetExhaustion(t *testing.T) {
	pool := netip.MustParsePrefix("192.168.0.0/23")
	var used []Used
	for i := 0; i < 2; i++ {
		p, err := NextSubnet(pool, 24, used)
		if err != nil {
			t.Fatal(err)
		}
		used = append(used, Used{Prefix: p, Owner: "n"})
	}
	_, err := NextSubnet(pool, 24, used)
	if !errors.Is(err, ErrExhausted) {
		t.Fatalf("err = %v, want ErrExhausted", err)
	}
	for _, want := range []string{"192.168.0.0/23", "no free /24", "--default-addr-pool"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// Freeing a subnet (removing its network) makes it available again.
	p, err := NextSubnet(pool, 24, used[1:])
	if err != nil || p.String() != "192.168.0.0/24" {
		t.Fatalf("after removing a network: %s, %v; want 192.168.0.0/24", p, err)
	}
}

func TestCheckPool(t *testing.T) {
	for _, tc := range []struct {
		pool string
		mask int
		want string
	}{
		{"10.0.0.0/8", 24, ""},
		{"10.0.0.0/8", 7, "mask length from 8 to 29"},
		{"10.0.0.0/8", 30, "mask length from 8 to 29"},
		{"10.0.0.1/8", 24, "host bits"},
		{"fd00::/8", 24, "IPv4"},
	} {
		err := CheckPool(netip.MustParsePrefix(tc.pool), tc.mask)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckPool(%s, %d) = %v, want %q", tc.pool, tc.mask, err, tc.want)
		}
	}
}

func TestCheckFreeNamesTheOwner(t *testing.T) {
	err := CheckFree(netip.MustParsePrefix("10.0.1.0/24"), []Used{{Prefix: netip.MustParsePrefix("10.0.0.0/16"), Owner: "backend"}})
	var oe *OverlapError
	if !errors.As(err, &oe) || !strings.Contains(err.Error(), `network "backend"`) {
		t.Fatalf("err = %v, want an overlap naming backend", err)
	}
}

func TestSubnetNeverGivesAnAddressTwice(t *testing.T) {
	s, err := NewSubnet(netip.MustParsePrefix("10.0.5.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Gateway().String() != "10.0.5.1" {
		t.Fatalf("gateway %s", s.Gateway())
	}
	seen := map[netip.Addr]bool{}
	for i := 0; i < 253; i++ {
		a, err := s.Allocate(fmt.Sprint("t", i))
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if seen[a] || a == s.Gateway() || a.String() == "10.0.5.0" || a.String() == "10.0.5.255" {
			t.Fatalf("allocation %d gave %s: given before or reserved", i, a)
		}
		seen[a] = true
	}
	if s.Free() != 0 {
		t.Fatalf("Free() = %d after 253 allocations, want 0", s.Free())
	}
	_, err = s.Allocate("one-too-many")
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "10.0.5.0/24") {
		t.Fatalf("err = %v, want ErrExhausted naming the subnet", err)
	}
}

func TestSubnetReusesAfterReleaseOnlyOnceItWrapped(t *testing.T) {
	s, _ := NewSubnet(netip.MustParsePrefix("10.0.0.0/29")) // hosts .2-.6
	a, _ := s.Allocate("a")
	s.Release(a, "a")
	b, _ := s.Allocate("b")
	if a == b {
		t.Fatalf("a freed address was handed out again at once (%s) while others were free", a)
	}
	for _, o := range []string{"c", "d", "e"} {
		if _, err := s.Allocate(o); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Allocate("f")
	if err != nil || got != a {
		t.Fatalf("full but for %s: got %s, %v; want the freed address", a, got, err)
	}
}

func TestSubnetReleaseByAnotherOwnerIsIgnored(t *testing.T) {
	s, _ := NewSubnet(netip.MustParsePrefix("10.0.0.0/24"))
	a, _ := s.Allocate("task1")
	s.Release(a, "task2")
	if s.Owner(a) != "task1" {
		t.Fatalf("a release by another owner freed %s", a)
	}
}

func TestSubnetReserveRebuildsState(t *testing.T) {
	// A new leader rebuilds from the store: reserved addresses are never
	// handed out, reserving twice for one owner is fine, for two is not.
	s, _ := NewSubnet(netip.MustParsePrefix("10.0.0.0/29"))
	held := []string{"10.0.0.2", "10.0.0.3", "10.0.0.5"}
	for i, h := range held {
		if err := s.Reserve(netip.MustParseAddr(h), fmt.Sprint("t", i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Reserve(netip.MustParseAddr("10.0.0.2"), "t0"); err != nil {
		t.Fatalf("reserving again for the same owner: %v", err)
	}
	if err := s.Reserve(netip.MustParseAddr("10.0.0.2"), "other"); err == nil {
		t.Fatal("reserving an address another owner holds succeeded")
	}
	for _, bad := range []string{"10.0.0.0", "10.0.0.1", "10.0.0.7", "10.0.1.2"} {
		if err := s.Reserve(netip.MustParseAddr(bad), "x"); err == nil {
			t.Errorf("Reserve(%s) succeeded; want an error", bad)
		}
	}
	got := map[string]bool{}
	for {
		a, err := s.Allocate("new")
		if err != nil {
			break
		}
		got[a.String()] = true
	}
	if len(got) != 2 || !got["10.0.0.4"] || !got["10.0.0.6"] {
		t.Fatalf("after rebuild got %v, want exactly 10.0.0.4 and 10.0.0.6", got)
	}
}

func TestNewSubnetRefusesBadPrefixes(t *testing.T) {
	for _, p := range []string{"10.0.0.0/30", "10.0.0.1/24", "fd00::/64"} {
		if _, err := NewSubnet(netip.MustParsePrefix(p)); err == nil {
			t.Errorf("NewSubnet(%s) succeeded", p)
		}
	}
}
