package dispatcher

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The dispatcher owns node liveness while this manager leads: a node is
// READY while its session heartbeats, and goes down when its deadline
// passes or another detector (gossip) reports it dead and it has not
// spoken lately. Every verdict that puts a node down passes through here.

// ReportDead takes another detector's verdict that a node is dead (gossip
// confirms deaths in about a second): the node goes down at once, unless
// its session was heard from within half a heartbeat period, since by the
// time gossip confirms a death a dead node has been silent that long, and
// one that just heartbeated is alive (gossip misjudged a starved prober or
// path). It reports whether the node was put down; it fails when this
// manager does not lead.
func (d *Dispatcher) ReportDead(nodeID, detector string) (bool, error) {
	if d.cfg.IsLeader != nil && !d.cfg.IsLeader() {
		return false, errNotLeading
	}
	return d.MarkDownIfSilent(nodeID, "node confirmed dead by "+detector, d.period()/2)
}

// errNotLeading refuses a verdict on a manager that does not lead.
var errNotLeading = errors.New("dispatcher: not running (not the leader); the leader marks nodes down")

// MarkDown puts a node down at once (gossip confirmed it dead) and ends its
// session. It returns an error when this dispatcher is not running.
func (d *Dispatcher) MarkDown(nodeID, reason string) error {
	_, err := d.MarkDownIfSilent(nodeID, reason, 0)
	return err
}

// MarkDownIfSilent is MarkDown unless the node's live session was heard
// from (a heartbeat or its start) within silence: another detector's
// verdict (gossip) is not taken against a node that just spoke to this
// leader. It reports whether the node was marked down.
func (d *Dispatcher) MarkDownIfSilent(nodeID, reason string, silence time.Duration) (bool, error) {
	if reason == "" {
		reason = "marked down"
	}
	d.mu.Lock()
	t := d.term
	if t == nil {
		d.mu.Unlock()
		return false, errNotLeading
	}
	if n := t.nodes[nodeID]; n != nil && n.sid != "" && silence > 0 && d.cfg.Now().Sub(n.heard) < silence {
		d.mu.Unlock()
		d.log.Info("not marking a node down: it was heard from just now", "node", nodeID, "reason", reason, "heard", n.heard)
		return false, nil
	}
	if n := t.nodes[nodeID]; n != nil {
		if n.end != nil {
			n.end(status.Errorf(codes.Unavailable, "node marked down: %s", reason))
		}
		delete(t.nodes, nodeID)
	}
	d.mu.Unlock()
	d.log.Info("node marked down", "node", nodeID, "reason", reason)
	d.enqueue(t, &write{fn: d.nodeDown(t, nodeID, reason)})
	return true, nil
}

// expire puts down the nodes whose deadline passed, checking a few times
// per heartbeat period.
func (d *Dispatcher) expire(ctx context.Context, t *term) error {
	for {
		// The period may change with the cluster spec: check at its pace.
		every := min(max(d.period()/4, 10*time.Millisecond), 500*time.Millisecond)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(every):
		}
		for id, reason := range d.expired(t) {
			d.log.Info("node down", "node", id, "reason", reason)
			d.enqueue(t, &write{fn: d.nodeDown(t, id, reason)})
		}
	}
}

// expired removes the nodes past their deadline, ending their sessions,
// and says why each is down.
func (d *Dispatcher) expired(t *term) map[string]string {
	now := d.cfg.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	var out map[string]string
	for id, n := range t.nodes {
		if !now.After(n.deadline) {
			continue
		}
		reason := n.reason
		if n.end != nil {
			n.end(status.Error(codes.FailedPrecondition, "heartbeat deadline passed; start a new session"))
		}
		delete(t.nodes, id)
		if out == nil {
			out = map[string]string{}
		}
		out[id] = reason
	}
	return out
}
