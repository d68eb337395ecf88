package dispatcher

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// logBuffer is how many messages a slow subscriber may fall behind before
// messages are dropped for it (never blocking the agents).
const logBuffer = 1024

// logBroker fans the log lines agents publish out to the live
// subscribers of each service.
type logBroker struct {
	mu   sync.Mutex
	subs map[string]map[chan *pb.LogMessage]struct{} // service ID → subscribers
}

func newLogBroker() *logBroker {
	return &logBroker{subs: map[string]map[chan *pb.LogMessage]struct{}{}}
}

func (b *logBroker) subscribe(ctx context.Context, serviceID string) <-chan *pb.LogMessage {
	ch := make(chan *pb.LogMessage, logBuffer)
	b.mu.Lock()
	if b.subs[serviceID] == nil {
		b.subs[serviceID] = map[chan *pb.LogMessage]struct{}{}
	}
	b.subs[serviceID][ch] = struct{}{}
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		delete(b.subs[serviceID], ch)
		if len(b.subs[serviceID]) == 0 {
			delete(b.subs, serviceID)
		}
		close(ch)
	})
	return ch
}

// wanted says whether anyone follows the service's logs.
func (b *logBroker) wanted(serviceID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs[serviceID]) > 0
}

func (b *logBroker) publish(serviceID string, m *pb.LogMessage) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for ch := range b.subs[serviceID] {
		select {
		case ch <- m:
		default: // a subscriber too slow to keep up loses lines, not the agents
		}
	}
}

// SubscribeLogs returns the log lines agents publish for the tasks of a
// service from now on, until ctx ends (the channel is then closed). It is
// the live feed behind `berth service logs --follow`; lines a subscriber
// is too slow to take are dropped for it.
func (d *Dispatcher) SubscribeLogs(ctx context.Context, serviceID string) <-chan *pb.LogMessage {
	return d.logs.subscribe(ctx, serviceID)
}

// PublishLogs takes the log lines of the caller's tasks and hands them to
// the subscribers of their services. Lines of tasks not on the caller's
// node are dropped; node_id and slot are set from the store, not trusted.
func (d *Dispatcher) PublishLogs(stream pb.Dispatcher_PublishLogsServer) error {
	id, t, err := d.caller(stream.Context())
	if err != nil {
		return err
	}
	owned := map[string]*pb.Task{}
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&pb.PublishLogsResponse{})
		}
		if err != nil {
			return err
		}
		if err := d.checkSession(t, id.NodeID, req.GetSessionId()); err != nil {
			return err
		}
		for _, m := range req.GetMessages() {
			task := d.ownTask(owned, id.NodeID, m.GetTaskId())
			if task == nil || !d.logs.wanted(task.GetServiceId()) {
				continue
			}
			m = proto.Clone(m).(*pb.LogMessage)
			m.NodeId, m.Slot = id.NodeID, task.GetSlot()
			d.logs.publish(task.GetServiceId(), m)
		}
	}
}

// ownTask returns the task if it is on node, remembering it for the
// stream.
func (d *Dispatcher) ownTask(owned map[string]*pb.Task, node, taskID string) *pb.Task {
	if t, ok := owned[taskID]; ok {
		return t
	}
	var t *pb.Task
	d.cfg.Store.View(func(tx store.ReadTx) { t = tx.GetTask(taskID) })
	if t.GetNodeId() != node {
		t = nil
	}
	owned[taskID] = t
	return t
}
