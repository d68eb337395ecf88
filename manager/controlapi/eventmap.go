package controlapi

import (
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// Event types and the actions every type has.
const (
	typeService = "service"
	typeTask    = "task"
	typeNode    = "node"
	typeNetwork = "network"
	typeSecret  = "secret"
	typeConfig  = "config"

	actionCreate = "create"
	actionUpdate = "update"
	actionRemove = "remove"
)

// eventNames resolves a task's service name, remembering names of
// services removed since.
type eventNames struct {
	st       *store.MemoryStore
	services map[string]string
}

func (n *eventNames) service(id string) string {
	if name, ok := n.services[id]; ok {
		return name
	}
	var name string
	n.st.View(func(tx store.ReadTx) { name = tx.GetService(id).GetSpec().GetAnnotations().GetName() })
	if name != "" {
		n.services[id] = name
	}
	return name
}

// toEvent says what a store change means to a user, or nil when it means
// nothing worth an event (a task's progress message, a heartbeat).
func (n *eventNames) toEvent(e store.Event) *pb.Event {
	var ev *pb.Event
	switch o := e.Object.(type) {
	case *pb.Service:
		name := o.GetSpec().GetAnnotations().GetName()
		n.services[o.GetId()] = name
		ev = &pb.Event{Type: typeService, Action: kindAction(e.Kind), Id: o.GetId(), Name: name}
	case *pb.Task:
		ev = n.taskEvent(e, o)
	case *pb.Node:
		ev = nodeEvent(e, o)
	case *pb.Network:
		ev = &pb.Event{Type: typeNetwork, Action: kindAction(e.Kind), Id: o.GetId(), Name: o.GetSpec().GetAnnotations().GetName()}
	case *pb.Secret:
		ev = &pb.Event{Type: typeSecret, Action: kindAction(e.Kind), Id: o.GetId(), Name: o.GetSpec().GetAnnotations().GetName()}
	case *pb.Config:
		ev = &pb.Event{Type: typeConfig, Action: kindAction(e.Kind), Id: o.GetId(), Name: o.GetSpec().GetAnnotations().GetName()}
	}
	if ev == nil {
		return nil
	}
	ev.Index = e.Index
	ev.TimeUnixNano = eventTime(e).UnixNano()
	return ev
}

// eventTime is when the change was written: the object's update time (set
// by the leader, the same on every manager); for a removal, when this
// manager applied it.
func eventTime(e store.Event) time.Time {
	type metaed interface{ GetMeta() *pb.Meta }
	if m, ok := e.Object.(metaed); ok && e.Kind != store.EventDelete && m.GetMeta().GetUpdatedAt() != nil {
		return m.GetMeta().GetUpdatedAt().AsTime()
	}
	return e.Time
}

func kindAction(k store.EventKind) string {
	switch k {
	case store.EventCreate:
		return actionCreate
	case store.EventDelete:
		return actionRemove
	}
	return actionUpdate
}

// taskEvent: created, removed, a new observed state (the action is the
// state, with the error), or a new desired state (update).
func (n *eventNames) taskEvent(e store.Event, t *pb.Task) *pb.Event {
	svc := n.service(t.GetServiceId())
	name := fmt.Sprintf("%s.%d", svc, t.GetSlot())
	if t.GetSlot() == 0 {
		name = svc + "." + t.GetNodeId()
	}
	ev := &pb.Event{Type: typeTask, Id: t.GetId(), Name: name, Attributes: map[string]string{
		"service": svc, "service_id": t.GetServiceId(), "slot": fmt.Sprint(t.GetSlot()),
		"state": lowerState(t.GetStatus().GetState()), "desired_state": lowerState(t.GetDesiredState()),
	}}
	if a := t.GetSpec().GetAttachment(); a != nil {
		// A standalone container's attachment: named after the container.
		ev.Name = a.GetContainerId()
		ev.Attributes = map[string]string{"container": a.GetContainerId(),
			"state": ev.Attributes["state"], "desired_state": ev.Attributes["desired_state"]}
	}
	if node := t.GetNodeId(); node != "" {
		ev.Attributes["node"] = node
	}
	old, _ := e.Old.(*pb.Task)
	switch {
	case e.Kind != store.EventUpdate:
		ev.Action = kindAction(e.Kind)
	case old.GetStatus().GetState() != t.GetStatus().GetState():
		ev.Action = lowerState(t.GetStatus().GetState())
		ev.Attributes["old_state"] = lowerState(old.GetStatus().GetState())
	case old.GetDesiredState() != t.GetDesiredState():
		ev.Action = actionUpdate
	default:
		return nil
	}
	if err := t.GetStatus().GetErr(); err != "" {
		ev.Attributes["error"] = err
	}
	if msg := t.GetStatus().GetMessage(); msg != "" {
		ev.Attributes["message"] = msg
	}
	return ev
}

// nodeEvent: joined, removed, up or down (its status changed), or an
// update of its spec (availability, role, labels).
func nodeEvent(e store.Event, nd *pb.Node) *pb.Event {
	ev := &pb.Event{Type: typeNode, Id: nd.GetId(), Name: nd.GetDescription().GetHostname(), Attributes: map[string]string{
		"state": strings.ToLower(strings.TrimPrefix(nd.GetStatus().GetState().String(), "STATE_")),
	}}
	old, _ := e.Old.(*pb.Node)
	switch {
	case e.Kind != store.EventUpdate:
		ev.Action = kindAction(e.Kind)
	case old.GetStatus().GetState() != nd.GetStatus().GetState():
		switch nd.GetStatus().GetState() {
		case pb.NodeStatus_STATE_READY:
			ev.Action = "up"
		case pb.NodeStatus_STATE_DOWN:
			ev.Action = "down"
		default:
			ev.Action = ev.Attributes["state"]
		}
		if msg := nd.GetStatus().GetMessage(); msg != "" {
			ev.Attributes["message"] = msg
		}
	case !proto.Equal(old.GetSpec(), nd.GetSpec()):
		ev.Action = actionUpdate
	default:
		return nil
	}
	return ev
}

// matches applies the request's filters.
func eventMatches(req *pb.EventsRequest, ev *pb.Event) bool {
	in := func(list []string, vals ...string) bool {
		if len(list) == 0 {
			return true
		}
		for _, v := range vals {
			for _, l := range list {
				if v != "" && strings.EqualFold(l, v) {
					return true
				}
			}
		}
		return false
	}
	return in(req.GetTypes(), ev.GetType()) && in(req.GetActions(), ev.GetAction()) &&
		in(req.GetNames(), ev.GetName(), ev.GetId(), ev.GetAttributes()["service"], ev.GetAttributes()["service_id"])
}
