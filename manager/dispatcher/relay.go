package dispatcher

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"berth/internal/ids"
	pb "berth/proto/berth/v1"
)

// Bounds of a relayed request.
const (
	// requestQueue is how many requests may wait for a session's stream.
	requestQueue = 64
	// answerTimeout bounds the wait for an agent to take up a request.
	answerTimeout = 10 * time.Second
)

// call is a request sent to an agent and waiting for, or served by, the
// agent's answering stream. The stream handler finds it by ID and checks
// that the caller is the node it was sent to.
type call struct {
	node string
	task string
	ctx  context.Context // ends when the asker stops listening
	// attach hands the answering stream's handler to the asker once.
	attach chan struct{}
	once   sync.Once
	// done receives the end of the answer (nil: complete).
	done chan error
	// out receives log lines (a logs call).
	out chan<- *pb.LogMessage
	// stats receives rounds of samples (a stats call); tasks are those asked.
	stats chan<- []*pb.TaskStats
	tasks map[string]bool
	// exec receives the agent's stream (an exec call).
	exec chan pb.Dispatcher_ExecServer
}

// calls are the requests in flight on this manager.
type calls struct {
	mu sync.Mutex
	m  map[string]*call
}

func (cs *calls) add(c *call) string {
	id := ids.New()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.m[id] = c
	return id
}

func (cs *calls) drop(id string) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	delete(cs.m, id)
}

// take returns the call id answered by node: NotFound when it is over (or
// never was), PermissionDenied when it was sent to another node.
func (cs *calls) take(id, node string) (*call, error) {
	cs.mu.Lock()
	c := cs.m[id]
	cs.mu.Unlock()
	if c == nil {
		return nil, status.Errorf(codes.NotFound, "no request %q is waiting (it ended or was never made)", id)
	}
	if c.node != node {
		return nil, status.Errorf(codes.PermissionDenied, "request %s was sent to another node", id)
	}
	attached := false
	c.once.Do(func() { attached = true; close(c.attach) })
	if !attached {
		return nil, status.Errorf(codes.AlreadyExists, "request %s is answered already", id)
	}
	return c, nil
}

// finish records the end of an answer; only the first counts.
func (c *call) finish(err error) {
	select {
	case c.done <- err:
	default:
	}
}

// nodeUnreachable is the error of a request for a node with no session.
func nodeUnreachable(node string) error {
	return status.Errorf(codes.Unavailable, "node %s has no session with the managers (it is down or unreachable)", node)
}

// sessionGone returns a channel closed when the node's live session ends
// (nil when it has none).
func (d *Dispatcher) sessionGone(node string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.term == nil {
		return nil
	}
	if n := d.term.nodes[node]; n != nil && n.sid != "" {
		return n.gone
	}
	return nil
}

// request queues r for the node's live session and returns a channel
// closed when that session ends.
func (d *Dispatcher) request(ctx context.Context, node string, r *pb.AgentRequest) (<-chan struct{}, error) {
	t, err := d.current()
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	n := t.nodes[node]
	var reqs chan *pb.AgentRequest
	var gone <-chan struct{}
	if n != nil && n.sid != "" {
		reqs, gone = n.reqs, n.gone
	}
	d.mu.Unlock()
	if reqs == nil {
		return nil, nodeUnreachable(node)
	}
	select {
	case reqs <- r:
		return gone, nil
	case <-gone:
		return nil, nodeUnreachable(node)
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// cancelRequest tells the node to stop serving request id, if its session
// has room for the message; an agent also stops when its answer is cut.
func (d *Dispatcher) cancelRequest(node, id string) {
	t, err := d.current()
	if err != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if n := t.nodes[node]; n != nil && n.reqs != nil {
		select {
		case n.reqs <- &pb.AgentRequest{Id: id, Cancel: true}:
		default:
		}
	}
}

// await waits for the agent to take up call c and finish it: nil when it
// completed, an error when the agent failed, did not answer in time or
// its session ended; nil too when ctx ended.
func (d *Dispatcher) await(ctx context.Context, c *call, gone <-chan struct{}, what string) error {
	timer := time.NewTimer(answerTimeout)
	defer timer.Stop()
	attach := c.attach
	for {
		select {
		case <-attach:
			timer.Stop()
			attach = nil
		case err := <-c.done:
			return err
		case <-gone:
			return status.Errorf(codes.Unavailable, "node %s's session with the managers ended while it served %s (the node is down or restarting)", c.node, what)
		case <-timer.C:
			return status.Errorf(codes.DeadlineExceeded, "node %s did not answer a request for %s within %v", c.node, what, answerTimeout)
		case <-ctx.Done():
			return nil
		}
	}
}
