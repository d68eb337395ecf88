package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"berth/internal/ids"
	"berth/manager/admit"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// Session registers the calling node, marks it READY and streams its
// assignments: the full set first, then changes, until the node's
// session is replaced or expires, the node is removed, or the term ends.
func (d *Dispatcher) Session(req *pb.SessionRequest, stream pb.Dispatcher_SessionServer) error {
	ctx := stream.Context()
	id, t, err := d.caller(ctx)
	if err != nil {
		return err
	}
	sid := ids.New()
	sctx, reqs, err := d.register(ctx, t, id.NodeID, sid)
	if err != nil {
		return err
	}
	defer d.unregister(t, id.NodeID, sid)
	if err := d.submit(sctx, t, d.nodeReady(ctx, id, req.GetDescription())); err != nil {
		return ended(sctx, err)
	}
	log := d.log.With("node", id.NodeID, "session", sid)
	log.Info("session started", "hostname", req.GetDescription().GetHostname())
	s := &session{
		d: d, node: id.NodeID, sid: sid, stream: stream, log: log, reqs: reqs,
		set:   newAssignSet(id.NodeID, d.cfg.OpenSecret, log),
		peers: newPeerSet(id.NodeID),
	}
	err = s.run(sctx)
	log.Info("session ended", "err", err)
	return ended(sctx, err)
}

// ended prefers the reason the dispatcher ended a session for (its cancel
// cause) over the error that reason caused.
func ended(sctx context.Context, err error) error {
	if sctx.Err() != nil {
		if cause := context.Cause(sctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return status.FromContextError(sctx.Err()).Err()
	}
	return err
}

// errResync says the watch broke off; the session sends a new full set.
var errResync = errors.New("watch lost; resynchronise")

// session is one agent's stream.
type session struct {
	d      *Dispatcher
	node   string
	sid    string
	stream pb.Dispatcher_SessionServer
	log    *slog.Logger
	set    *assignSet
	peers  *peerSet
	reqs   <-chan *pb.AgentRequest
	sent   settings
	// role is the node's desired role as last read from the store;
	// sentRole is the one last sent (nil before the first message).
	role     pb.NodeSpec_Role
	sentRole *pb.NodeSpec_Role
}

// settings are the cluster values a session message carries.
type settings struct {
	managers []*pb.WeightedPeer
	insecure []string
	key      []byte
	accept   [][]byte
	peers    []string
}

func (d *Dispatcher) settings() settings {
	var s settings
	if d.cfg.Managers != nil {
		s.managers = d.cfg.Managers()
	}
	if d.cfg.InsecureRegistries != nil {
		s.insecure = d.cfg.InsecureRegistries()
	}
	if d.cfg.GossipKeys != nil {
		s.key, s.accept = d.cfg.GossipKeys()
	}
	if d.cfg.GossipPeers != nil {
		s.peers = d.cfg.GossipPeers()
	}
	return s
}

func (s settings) equal(o settings) bool {
	return slices.EqualFunc(s.managers, o.managers, func(a, b *pb.WeightedPeer) bool { return proto.Equal(a, b) }) &&
		slices.Equal(s.insecure, o.insecure) && slices.Equal(s.key, o.key) && slices.Equal(s.peers, o.peers) &&
		slices.EqualFunc(s.accept, o.accept, bytes.Equal)
}

// message is a session message; it carries the cluster settings when it
// is full or they changed since the last sent (an agent acts on each).
func (s *session) message(set settings, full bool, changes []*pb.AssignmentChange) *pb.SessionMessage {
	m := &pb.SessionMessage{
		SessionId: s.sid, NodeId: s.node, Full: full, Changes: changes,
		HeartbeatPeriod: durationpb.New(s.d.period()),
	}
	if full || !set.equal(s.sent) {
		s.sent = set
		m.Managers, m.InsecureRegistries = set.managers, set.insecure
		m.GossipKey, m.GossipAcceptKeys, m.GossipPeers = set.key, set.accept, set.peers
	}
	if full || s.roleChanged() {
		m.DesiredRole = s.role.Enum()
		s.sentRole = m.DesiredRole
	}
	return m
}

// roleChanged says whether the node's desired role differs from the one
// last sent.
func (s *session) roleChanged() bool { return s.sentRole == nil || *s.sentRole != s.role }

// run sends a full set, then follows the store; when the watch breaks off
// it starts over with a new full set.
func (s *session) run(ctx context.Context) error {
	for {
		var changes []*pb.AssignmentChange
		w, err := s.d.cfg.Store.ViewAndWatch(ctx, func(tx store.ReadTx) {
			tasks := s.set.full(tx)
			changes = append(s.peers.full(tx, s.set.tasks), tasks...)
			s.role = tx.GetNode(s.node).GetSpec().GetDesiredRole()
		}, s.filter)
		if err != nil {
			return status.Errorf(codes.Unavailable, "watch the node's tasks: %v", err)
		}
		if err := s.stream.Send(s.message(s.d.settings(), true, changes)); err != nil {
			w.Close()
			return err
		}
		err = s.follow(ctx, w)
		w.Close()
		if !errors.Is(err, errResync) {
			return err
		}
		s.log.Info("store watch lost; sending the full set again", "err", err)
	}
}

// filter passes the events a session may act on: its node's tasks (also
// those moved away), tasks on networks, services (for their endpoints),
// secret updates, changes to its own Node (removal, or a new desired
// role) and other nodes going down or coming back.
func (s *session) filter(e store.Event) bool {
	switch o := e.Object.(type) {
	case *pb.Task:
		old, _ := e.Old.(*pb.Task)
		// Tasks on networks matter wherever they run: they are peers.
		return o.GetNodeId() == s.node || old.GetNodeId() == s.node || len(o.GetNetworks()) > 0
	case *pb.Secret:
		return e.Kind == store.EventUpdate
	case *pb.Service:
		return true // names, VIPs and ports of endpoints
	case *pb.Node:
		if o.GetId() != s.node {
			// Another node going down or coming back: its standalone
			// containers leave or rejoin DNS (endpoints.addAttachment).
			old, _ := e.Old.(*pb.Node)
			return e.Kind == store.EventUpdate && nodeDown(old) != nodeDown(o)
		}
		return e.Kind == store.EventDelete || e.Kind == store.EventUpdate
	}
	return false
}

// nodeDown says whether n is known and down.
func nodeDown(n *pb.Node) bool {
	return n.GetStatus().GetState() == pb.NodeStatus_STATE_DOWN
}

// follow sends the watched changes, coalesced over BatchWindow, and the
// cluster settings when they change.
func (s *session) follow(ctx context.Context, w *store.Watcher) error {
	dirty := map[string]*pb.Task{}
	var flush <-chan time.Time
	tick := time.NewTicker(s.d.period())
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Events():
			if !ok {
				if err := w.Err(); err != nil && ctx.Err() == nil {
					return errors.Join(errResync, err)
				}
				return ctx.Err()
			}
			if !s.note(e, dirty) {
				return admit.Removed(s.node)
			}
			if flush == nil {
				flush = time.After(s.d.cfg.BatchWindow)
			}
		case <-flush:
			flush = nil
			if err := s.send(dirty); err != nil {
				return err
			}
			clear(dirty)
		case r := <-s.reqs:
			if err := s.sendRequests(r); err != nil {
				return err
			}
		case <-tick.C:
			if set := s.d.settings(); !set.equal(s.sent) {
				if err := s.stream.Send(s.message(set, false, nil)); err != nil {
					return err
				}
			}
		}
	}
}

// note records an event; false when the node itself was removed.
func (s *session) note(e store.Event, dirty map[string]*pb.Task) bool {
	switch o := e.Object.(type) {
	case *pb.Task:
		if e.Kind == store.EventDelete {
			dirty[o.GetId()] = nil
		} else {
			dirty[o.GetId()] = o
		}
	case *pb.Secret:
		if s.set.stale(o.GetId()) {
			dirty[""] = nil // nothing about tasks, but the data must go out
		}
	case *pb.Service:
		dirty[""] = nil // endpoints are recomputed on every send
	case *pb.Node:
		if o.GetId() != s.node {
			dirty[""] = nil // endpoints are recomputed on every send
			return true
		}
		if e.Kind == store.EventDelete {
			return false
		}
		s.role = o.GetSpec().GetDesiredRole()
	}
	return true
}

// send tells the agent what the dirty tasks change, if anything, and its
// node's desired role when that changed.
func (s *session) send(dirty map[string]*pb.Task) error {
	delete(dirty, "")
	var changes []*pb.AssignmentChange
	s.d.cfg.Store.View(func(tx store.ReadTx) {
		tasks := s.set.changes(tx, dirty)
		add, remove := s.peers.changes(tx, s.set.tasks)
		changes = slices.Concat(add, tasks, remove)
	})
	if len(changes) == 0 && !s.roleChanged() {
		return nil
	}
	return s.stream.Send(s.message(s.d.settings(), false, changes))
}

// sendRequests sends r and any other queued requests in one message.
func (s *session) sendRequests(r *pb.AgentRequest) error {
	rs := []*pb.AgentRequest{r}
	for len(rs) < cap(s.reqs) {
		select {
		case r := <-s.reqs:
			rs = append(rs, r)
			continue
		default:
		}
		break
	}
	return s.stream.Send(&pb.SessionMessage{
		SessionId: s.sid, NodeId: s.node, Requests: rs,
		HeartbeatPeriod: durationpb.New(s.d.period()),
	})
}
