package agent

import (
	"slices"
	"testing"

	pb "berth/proto/berth/v1"
)

func TestManagersAreSavedAndTriedFirst(t *testing.T) {
	dir := t.TempDir()
	if got := loadManagers(dir); got != nil {
		t.Fatalf("fresh dir: saved managers %v, want none", got)
	}
	p := newPeers([]string{"10.0.0.9:4242"})
	p.save = func(addrs []string) {
		if err := saveManagers(dir, addrs); err != nil {
			t.Fatal(err)
		}
	}
	p.update([]*pb.WeightedPeer{{Addr: "10.0.0.2:4242", Weight: 1}, {Addr: "10.0.0.1:4242", Weight: 2}})
	want := []string{"10.0.0.1:4242", "10.0.0.2:4242"}
	if got := loadManagers(dir); !slices.Equal(got, want) {
		t.Fatalf("saved managers %v, want %v (best weight first)", got, want)
	}
	restarted := newPeers([]string{"10.0.0.9:4242"}).withSaved(loadManagers(dir))
	var tried []string
	for range 3 {
		tried = append(tried, restarted.next())
	}
	if !slices.Equal(tried, []string{"10.0.0.1:4242", "10.0.0.2:4242", "10.0.0.9:4242"}) {
		t.Fatalf("a restarted agent tries %v, want the saved managers, then --join", tried)
	}
}
