package controlapi

import (
	"context"
	"fmt"
	"time"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// drainIdle is how long Events waits for more changes written before its
// until once that time has come.
const drainIdle = 200 * time.Millisecond

// eventTypes are the types Events knows, for checking filters.
var eventTypes = []string{typeService, typeTask, typeNode, typeNetwork, typeSecret, typeConfig}

// Events streams what changes in the store, filtered: with since, the
// changes the store's changelog still holds from then on (its bounded
// history: a client that reconnects with the time of the last event it saw
// misses nothing within it), then new ones; until until, or until the
// client leaves. When since reaches back before the history held, a
// notice says so first.
func (s *Server) Events(req *pb.EventsRequest, stream pb.Control_EventsServer) error {
	if err := checkEventsRequest(req); err != nil {
		return err
	}
	ctx := stream.Context()
	if err := s.view(ctx, func(store.ReadTx) error { return nil }); err != nil {
		return err
	}
	since, until := unixNano(req.GetSinceUnixNano()), unixNano(req.GetUntilUnixNano())
	var w *store.Watcher
	var from uint64
	var err error
	if since.IsZero() {
		w, err = s.st.ViewAndWatch(ctx, func(store.ReadTx) {})
	} else {
		w, from, err = s.st.WatchHeld(ctx)
	}
	if err != nil {
		return toStatus(err)
	}
	defer w.Close()
	var end <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(max(until.Sub(s.cfg.Now()), 0))
		defer t.Stop()
		end = t.C
	}
	return s.sendEvents(ctx, req, w, from, since, until, end, stream)
}

// sendEvents sends the matching events of w until end or ctx ends.
func (s *Server) sendEvents(ctx context.Context, req *pb.EventsRequest, w *store.Watcher, from uint64, since, until time.Time,
	end <-chan time.Time, stream pb.Control_EventsServer) error {
	names := &eventNames{st: s.st, services: map[string]string{}}
	first := true
	var idle <-chan time.Time // after until: the changes still on their way
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-end:
			end, idle = nil, time.After(drainIdle)
		case <-idle:
			return nil
		case e, ok := <-w.Events():
			if !ok {
				return toStatus(w.Err())
			}
			if idle != nil {
				idle = time.After(drainIdle)
			}
			ev := names.toEvent(e)
			if ev == nil {
				continue
			}
			t := unixNano(ev.GetTimeUnixNano())
			if first && from > 0 && !since.IsZero() && since.Before(t) {
				notice := fmt.Sprintf("events before %s are no longer held by this manager (it keeps the last %d changes); some may be missing",
					t.UTC().Format(time.RFC3339), store.DefaultChangelogSize)
				if err := stream.Send(&pb.EventsMessage{Notice: notice}); err != nil {
					return err
				}
			}
			first = false
			if t.Before(since) || !eventMatches(req, ev) {
				continue
			}
			if !until.IsZero() && t.After(until) {
				return nil
			}
			if err := stream.Send(&pb.EventsMessage{Event: ev}); err != nil {
				return err
			}
		}
	}
}

func checkEventsRequest(req *pb.EventsRequest) error {
	for _, t := range req.GetTypes() {
		if !anyOf(eventTypes, func(k string) bool { return k == t }) {
			return invalid("filter type=%s: use one of %v", t, eventTypes)
		}
	}
	if u, s := req.GetUntilUnixNano(), req.GetSinceUnixNano(); u != 0 && u < s {
		return invalid("until is before since: give an until after since")
	}
	return nil
}

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}
