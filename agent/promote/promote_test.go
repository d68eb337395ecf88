package promote

import (
	"log/slog"
	"testing"

	pb "berth/proto/berth/v1"
)

func TestAddrs(t *testing.T) {
	for _, tc := range []struct {
		listen, advertiseIP, wantListen, wantAdvertise string
	}{
		{"", "10.0.0.5", "10.0.0.5:4242", ""},
		{"", "", "0.0.0.0:4242", ""},
		{"0.0.0.0:5000", "10.0.0.5", "0.0.0.0:5000", "10.0.0.5:5000"},
		{":5000", "10.0.0.5", ":5000", "10.0.0.5:5000"},
		{"10.0.0.6:4242", "10.0.0.5", "10.0.0.6:4242", ""},
	} {
		l, a, err := Addrs(tc.listen, tc.advertiseIP)
		if err != nil || l != tc.wantListen || a != tc.wantAdvertise {
			t.Errorf("Addrs(%q, %q) = %q, %q, %v; want %q, %q", tc.listen, tc.advertiseIP, l, a, err, tc.wantListen, tc.wantAdvertise)
		}
	}
}

// TestPartKeepsTheLatestRole: a session's news never blocks it, and
// the manager part acts on the latest.
func TestPartKeepsTheLatestRole(t *testing.T) {
	p := New(Config{Dir: t.TempDir(), ListenAddr: "127.0.0.1:0", Log: slog.New(slog.DiscardHandler)})
	p.Want(pb.NodeSpec_ROLE_MANAGER)
	p.Want(pb.NodeSpec_ROLE_MANAGER)
	p.Want(pb.NodeSpec_ROLE_WORKER)
	if got := <-p.roles; got != pb.NodeSpec_ROLE_WORKER {
		t.Fatalf("latest role %v, want worker", got)
	}
	select {
	case r := <-p.roles:
		t.Fatalf("a stale role %v is left", r)
	default:
	}
}
