package agent

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// Reporter defaults.
const (
	flushInterval = 100 * time.Millisecond
	maxBatch      = 100
)

// reporter batches task statuses to the managers: it keeps the latest
// status per task, sends what is pending every flushInterval (or at once
// when maxBatch tasks wait), and retries until a session accepts them.
// Put never blocks, so controllers never wait on the network.
type reporter struct {
	send func(ctx context.Context, updates []*pb.TaskStatusUpdate) error
	log  *slog.Logger

	mu      sync.Mutex
	pending map[string]*pb.TaskStatus
	sent    map[string]pb.TaskState // highest state accepted per task
	kick    chan struct{}
}

func newReporter(send func(context.Context, []*pb.TaskStatusUpdate) error, log *slog.Logger) *reporter {
	return &reporter{
		send: send, log: log,
		pending: map[string]*pb.TaskStatus{},
		sent:    map[string]pb.TaskState{},
		kick:    make(chan struct{}, 1),
	}
}

// Put queues a task's status, replacing one not sent yet. A status whose
// state is lower than one queued or sent before is dropped: states only
// move forward.
func (r *reporter) Put(taskID string, st *pb.TaskStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.pending[taskID]; ok && st.GetState() < p.GetState() {
		return
	}
	if s, ok := r.sent[taskID]; ok && st.GetState() < s {
		return
	}
	r.pending[taskID] = st
	if len(r.pending) >= maxBatch {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// PutNow is Put, and sends what is pending at once rather than at the
// next tick: for a status others wait on (an attachment's RUNNING makes
// its container's name resolve on every node).
func (r *reporter) PutNow(taskID string, st *pb.TaskStatus) {
	r.Put(taskID, st)
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// forget drops what the reporter remembers of a task that left the node.
func (r *reporter) forget(taskID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.sent, taskID)
	delete(r.pending, taskID)
}

// Run flushes until ctx ends.
func (r *reporter) Run(ctx context.Context) error {
	tick := time.NewTicker(flushInterval)
	defer tick.Stop()
	b := backoff{min: flushInterval, max: 2 * time.Second}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-r.kick:
		}
		batch := r.take()
		if len(batch) == 0 {
			continue
		}
		err := r.send(ctx, batch)
		if err == nil {
			r.done(batch)
			b.reset()
			continue
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.NotFound, codes.PermissionDenied:
			r.log.Warn("managers refused task statuses; dropping them", "err", err, "updates", len(batch))
			r.done(batch)
			continue
		}
		r.log.Debug("task status report failed; will retry", "err", err, "updates", len(batch))
		r.putBack(batch)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(b.next()):
		}
	}
}

// take removes and returns the pending statuses, oldest first.
func (r *reporter) take() []*pb.TaskStatusUpdate {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*pb.TaskStatusUpdate, 0, len(r.pending))
	for id, st := range r.pending {
		out = append(out, &pb.TaskStatusUpdate{TaskId: id, Status: st})
	}
	clear(r.pending)
	sort.Slice(out, func(i, j int) bool {
		return out[i].Status.GetTimestamp().AsTime().Before(out[j].Status.GetTimestamp().AsTime())
	})
	return out
}

func (r *reporter) done(batch []*pb.TaskStatusUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range batch {
		if u.Status.GetState() > r.sent[u.TaskId] {
			r.sent[u.TaskId] = u.Status.GetState()
		}
	}
}

// putBack requeues a failed batch where no newer status arrived meanwhile.
func (r *reporter) putBack(batch []*pb.TaskStatusUpdate) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, u := range batch {
		if _, newer := r.pending[u.TaskId]; !newer {
			r.pending[u.TaskId] = u.Status
		}
	}
}

// backoff is an exponential delay with jitter.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the next delay: doubling from min up to max, each drawn
// from [d/2, d) so that agents restarted together spread out.
func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	half := b.cur / 2
	return half + rand.N(half+1)
}

func (b *backoff) reset() { b.cur = 0 }
