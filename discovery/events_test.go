package discovery

import (
	"log/slog"
	"net"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestEventQueueCoalescesPerNode(t *testing.T) {
	t.Parallel()
	q := newEventQueue()
	q.push(Event{NodeID: "a", Kind: EventJoin, Addr: "1"})
	q.push(Event{NodeID: "b", Kind: EventJoin})
	q.push(Event{NodeID: "a", Kind: EventUpdate, Addr: "2"})
	q.push(Event{NodeID: "b", Kind: EventDead})
	q.push(Event{NodeID: "b", Kind: EventAlive})

	want := []Event{{NodeID: "a", Kind: EventJoin, Addr: "2"}, {NodeID: "b", Kind: EventAlive}}
	for _, w := range want {
		got, ok := q.pop()
		if !ok || got.NodeID != w.NodeID || got.Kind != w.Kind || got.Addr != w.Addr {
			t.Fatalf("pop = %+v, %v; want %+v", got, ok, w)
		}
	}
	if e, ok := q.pop(); ok {
		t.Fatalf("queue not empty: %+v", e)
	}
}

func TestParseMemberlistLine(t *testing.T) {
	t.Parallel()
	cases := []struct {
		line  string
		level slog.Level
		msg   string
	}{
		{"[DEBUG] memberlist: Stream connection from=1.2.3.4:5", slog.LevelDebug, "Stream connection from=1.2.3.4:5"},
		{"[INFO] memberlist: Marking n1 as failed", slog.LevelInfo, "Marking n1 as failed"},
		{"[WARN] memberlist: Refuting a dead message", slog.LevelWarn, "Refuting a dead message"},
		{"[ERR] memberlist: Failed to send", slog.LevelError, "Failed to send"},
		{"[ERR] Failed to shutdown transport", slog.LevelError, "Failed to shutdown transport"},
		{"no tag at all", slog.LevelInfo, "no tag at all"},
	}
	for _, tc := range cases {
		level, msg := parseMemberlistLine(tc.line)
		if level != tc.level || msg != tc.msg {
			t.Errorf("parse %q = %v %q, want %v %q", tc.line, level, msg, tc.level, tc.msg)
		}
	}
}

func TestLateLeaveIntentCorrectsDead(t *testing.T) {
	t.Parallel()
	d := newDelegate("self", nodeMeta{}, nil, slog.New(slog.DiscardHandler))
	n := &memberlist.Node{Name: "a", Addr: net.ParseIP("10.0.0.1"), Port: 7946}
	d.NotifyJoin(n)
	d.NotifyLeave(n) // no intent yet: a failure
	d.NotifyMsg(append([]byte{msgLeaveIntent}, "a"...))

	var kinds []EventKind
	for e, ok := d.queue.pop(); ok; e, ok = d.queue.pop() {
		kinds = append(kinds, e.Kind)
	}
	if len(kinds) != 1 || kinds[0] != EventLeave {
		t.Fatalf("coalesced events = %v, want [leave]", kinds)
	}
	if s := d.state("a"); s != MemberLeft {
		t.Fatalf("state = %s, want left", s)
	}
}

func TestLeaveIntentBeforeLeaveIsLeave(t *testing.T) {
	t.Parallel()
	d := newDelegate("self", nodeMeta{}, nil, slog.New(slog.DiscardHandler))
	n := &memberlist.Node{Name: "a", Addr: net.ParseIP("10.0.0.1"), Port: 7946}
	d.NotifyJoin(n)
	d.NotifyMsg(append([]byte{msgLeaveIntent}, "a"...))
	d.NotifyLeave(n)
	if s := d.state("a"); s != MemberLeft {
		t.Fatalf("state = %s, want left", s)
	}
	d.NotifyJoin(n)
	d.NotifyLeave(n) // back, then failed without an intent
	if s := d.state("a"); s != MemberDead {
		t.Fatalf("state after rejoin and failure = %s, want dead", s)
	}
}
