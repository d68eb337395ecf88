package manager

import (
	"log/slog"
	"slices"
	"testing"

	"berth/discovery"
)

// reported records the verdicts gossip hands on.
type reported []string

func (r *reported) ReportDead(nodeID, detector string) (bool, error) {
	*r = append(*r, nodeID+" by "+detector)
	return true, nil
}

// TestGossipHandsOnAgentDeathsOnly: of gossip's events, only an agent's
// confirmed death reaches the owner of node liveness; managers are
// Raft's to watch.
func TestGossipHandsOnAgentDeathsOnly(t *testing.T) {
	s := &gossip{cfg: gossipConfig{log: slog.New(slog.DiscardHandler)}}
	var got reported
	for _, ev := range []discovery.Event{
		{NodeID: "w1", Kind: discovery.EventDead, Role: "worker"},
		{NodeID: "m1", Kind: discovery.EventDead, Role: "manager"},
		{NodeID: "w2", Kind: discovery.EventJoin, Role: "worker"},
		{NodeID: "w3", Kind: discovery.EventAlive, Role: "worker"},
	} {
		s.handle(ev, &got)
	}
	if want := (reported{"w1 by gossip"}); !slices.Equal(got, want) {
		t.Fatalf("verdicts handed on: %v, want %v", got, want)
	}
}
