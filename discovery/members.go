package discovery

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// MemberState is what gossip last concluded about a member.
type MemberState int

const (
	// MemberAlive: the member answers probes (or is merely suspected).
	MemberAlive MemberState = iota + 1
	// MemberDead: gossip confirmed the member failed.
	MemberDead
	// MemberLeft: the member left gracefully.
	MemberLeft
)

// String returns the state's lower-case name.
func (s MemberState) String() string {
	switch s {
	case MemberAlive:
		return "alive"
	case MemberDead:
		return "dead"
	case MemberLeft:
		return "left"
	default:
		return "unknown"
	}
}

// Member is one member as this node sees it, including ones that died or
// left (until they come back).
type Member struct {
	NodeID  string
	Addr    string // gossip address, host:port
	State   MemberState
	Role    string
	APIAddr string
	Meta    map[string]string
	// Since is when this node saw the member enter State.
	Since time.Time
}

// msgLeaveIntent prefixes the user message a member sends to every live
// member just before it leaves. memberlist reports a graceful leave and a
// failure through the same NotifyLeave, and in v0.7.0 the Node it passes
// always says StateAlive (memberlist issue #293), so the intent is how
// receivers tell the two apart.
const msgLeaveIntent byte = 1

// leaveIntentTTL is how long a received leave intent classifies the
// sender's departure as a leave rather than a failure.
const leaveIntentTTL = 30 * time.Second

// delegate receives memberlist's callbacks. memberlist calls the event
// methods with its node lock held, so they only update the table and
// queue an event: never block, never call back into memberlist.
type delegate struct {
	self   string
	logger *slog.Logger
	queue  *eventQueue
	now    func() time.Time

	mu      sync.Mutex
	meta    nodeMeta
	encoded []byte
	members map[string]Member
	leaving map[string]time.Time
}

func newDelegate(self string, meta nodeMeta, encoded []byte, logger *slog.Logger) *delegate {
	return &delegate{
		self:    self,
		logger:  logger,
		queue:   newEventQueue(),
		now:     time.Now,
		meta:    meta,
		encoded: encoded,
		members: make(map[string]Member),
		leaving: make(map[string]time.Time),
	}
}

// NodeMeta returns our encoded metadata (validated to fit the limit).
func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.encoded) > limit {
		return nil
	}
	return slices.Clone(d.encoded)
}

// setMeta replaces our metadata.
func (d *delegate) setMeta(m nodeMeta, encoded []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.meta, d.encoded = m, encoded
}

func (d *delegate) localMeta() nodeMeta {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.meta
}

// NotifyMsg records leave intents; other user messages are ignored.
func (d *delegate) NotifyMsg(b []byte) {
	if len(b) < 2 || b[0] != msgLeaveIntent {
		return
	}
	id := string(b[1:])
	now := d.now()
	d.mu.Lock()
	for n, at := range d.leaving {
		if now.Sub(at) > leaveIntentTTL {
			delete(d.leaving, n)
		}
	}
	m, known := d.members[id]
	if !known || m.State != MemberDead {
		d.leaving[id] = now
		d.mu.Unlock()
		return
	}
	// The intent lost the race with the leave itself: a member reported
	// dead cannot speak, so it left. Correct the verdict.
	m.State, m.Since = MemberLeft, now
	d.members[id] = m
	e := Event{NodeID: id, Addr: m.Addr, Kind: EventLeave, Role: m.Role,
		APIAddr: m.APIAddr, Meta: maps.Clone(m.Meta), At: now}
	d.mu.Unlock()
	d.emit(e)
}

// GetBroadcasts has nothing to piggyback: leave intents go point to point.
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState has no extra state to sync: the node table is all we need.
func (d *delegate) LocalState(join bool) []byte { return nil }

// MergeRemoteState ignores remote extra state (LocalState sends none).
func (d *delegate) MergeRemoteState(buf []byte, join bool) {}

// NotifyJoin: a new member, or one back from dead or left.
func (d *delegate) NotifyJoin(n *memberlist.Node) {
	d.mu.Lock()
	prev, known := d.members[n.Name]
	delete(d.leaving, n.Name)
	kind := EventJoin
	if known && prev.State == MemberDead {
		kind = EventAlive
	}
	e := d.recordLocked(n, MemberAlive, kind)
	d.mu.Unlock()
	d.emit(e)
}

// NotifyLeave: a member left or was confirmed dead.
func (d *delegate) NotifyLeave(n *memberlist.Node) {
	d.mu.Lock()
	state, kind := MemberDead, EventDead
	if at, ok := d.leaving[n.Name]; ok && d.now().Sub(at) <= leaveIntentTTL {
		state, kind = MemberLeft, EventLeave
	}
	delete(d.leaving, n.Name)
	e := d.recordLocked(n, state, kind)
	d.mu.Unlock()
	d.emit(e)
}

// NotifyUpdate: a live member changed its metadata or address.
func (d *delegate) NotifyUpdate(n *memberlist.Node) {
	d.mu.Lock()
	state := MemberAlive
	if prev, ok := d.members[n.Name]; ok {
		state = prev.State
	}
	e := d.recordLocked(n, state, EventUpdate)
	d.mu.Unlock()
	d.emit(e)
}

// recordLocked stores what n says and builds the matching event.
func (d *delegate) recordLocked(n *memberlist.Node, state MemberState, kind EventKind) Event {
	now := d.now()
	meta, err := decodeMeta(n.Meta)
	if err != nil {
		d.logger.Debug("gossip member has unreadable metadata", "node", n.Name, "err", err)
	}
	m := Member{
		NodeID: n.Name, Addr: hostPort(n), State: state,
		Role: meta.Role, APIAddr: meta.APIAddr, Meta: meta.Meta, Since: now,
	}
	if prev, ok := d.members[n.Name]; ok && prev.State == state {
		m.Since = prev.Since
	}
	d.members[n.Name] = m
	return Event{
		NodeID: m.NodeID, Addr: m.Addr, Kind: kind,
		Role: m.Role, APIAddr: m.APIAddr, Meta: maps.Clone(m.Meta), At: now,
	}
}

// emit queues e for the consumer unless it is about ourselves.
func (d *delegate) emit(e Event) {
	if e.NodeID == d.self {
		return
	}
	level := slog.LevelDebug
	if e.Kind == EventDead {
		level = slog.LevelInfo
	}
	// Called from memberlist's goroutines, which carry no context.
	d.logger.Log(context.Background(), level, "gossip member "+e.Kind.String(), "node", e.NodeID, "addr", e.Addr)
	d.queue.push(e)
}

// snapshot returns all members sorted by node ID.
func (d *delegate) snapshot() []Member {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Member, 0, len(d.members))
	for _, m := range d.members {
		m.Meta = maps.Clone(m.Meta)
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.NodeID, b.NodeID) })
	return out
}

// state returns a member's state, or 0 if unknown.
func (d *delegate) state(id string) MemberState {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.members[id].State
}

// deadSince lists members (not ourselves) that died within window,
// sorted by node ID: the candidates for reconnecting.
func (d *delegate) deadSince(window time.Duration) []Member {
	now := d.now()
	var out []Member
	for _, m := range d.snapshot() {
		if m.NodeID != d.self && m.State == MemberDead && now.Sub(m.Since) <= window {
			out = append(out, m)
		}
	}
	return out
}
