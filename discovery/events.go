package discovery

import (
	"sync"
	"time"
)

// EventKind says what gossip observed about a member.
type EventKind int

const (
	// EventJoin: a member was seen for the first time, or again after it
	// left gracefully.
	EventJoin EventKind = iota + 1
	// EventLeave: a member announced it was leaving and then left.
	EventLeave
	// EventDead: gossip confirmed a member failed (it stopped answering
	// probes and did not refute the suspicion). Treat the node as down.
	EventDead
	// EventAlive: a member reported dead is alive again (it restarted, or
	// a network cut healed).
	EventAlive
	// EventUpdate: a live member changed its metadata or address.
	EventUpdate
)

// String returns the kind's lower-case name.
func (k EventKind) String() string {
	switch k {
	case EventJoin:
		return "join"
	case EventLeave:
		return "leave"
	case EventDead:
		return "dead"
	case EventAlive:
		return "alive"
	case EventUpdate:
		return "update"
	default:
		return "unknown"
	}
}

// Event is one observed change of another member. Events about the local
// member itself are not sent.
type Event struct {
	NodeID string
	// Addr is the member's gossip address, host:port.
	Addr    string
	Kind    EventKind
	Role    string
	APIAddr string
	Meta    map[string]string
	// At is when this member observed the change.
	At time.Time
}

// eventQueue hands events from memberlist's goroutines to a consumer
// without ever blocking memberlist. It coalesces per node: while a node's
// event waits, a newer event for the same node replaces it (an Update
// keeps the waiting event's kind and takes its new fields, since the
// consumer has not seen the join yet). So a slow consumer sees each node's
// latest state, in the order nodes first changed, and memory is bounded by
// the number of nodes; it may miss intermediate states (Dead then Alive
// arrives as Alive, which still tells it the node came back).
type eventQueue struct {
	mu      sync.Mutex
	order   []string
	pending map[string]Event
	wake    chan struct{}
}

func newEventQueue() *eventQueue {
	return &eventQueue{pending: make(map[string]Event), wake: make(chan struct{}, 1)}
}

// push records e; it never blocks.
func (q *eventQueue) push(e Event) {
	q.mu.Lock()
	if old, ok := q.pending[e.NodeID]; ok {
		if e.Kind == EventUpdate {
			e.Kind = old.Kind
		}
	} else {
		q.order = append(q.order, e.NodeID)
	}
	q.pending[e.NodeID] = e
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// pop takes the oldest waiting event.
func (q *eventQueue) pop() (Event, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.order) == 0 {
		return Event{}, false
	}
	id := q.order[0]
	q.order[0] = ""
	q.order = q.order[1:]
	e := q.pending[id]
	delete(q.pending, id)
	return e, true
}
