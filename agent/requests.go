package agent

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// logSource reads a container's log records (runtime.Runtime does).
type logSource interface {
	LogEntries(ctx context.Context, id string, opts runtime.LogOptions, fn func(runtime.LogEntry) error) error
}

// requests serves the AgentRequests of one session: each runs until it is
// done, the managers cancel it, or the session ends (stop waits for all).
type requests struct {
	client     pb.DispatcherClient
	sid        string
	logs       logSource
	containers containers
	log        *slog.Logger

	mu      sync.Mutex
	running map[string]context.CancelFunc
	wg      sync.WaitGroup
}

func newRequests(client pb.DispatcherClient, sid string, logs logSource, cs containers, log *slog.Logger) *requests {
	return &requests{client: client, sid: sid, logs: logs, containers: cs, log: log, running: map[string]context.CancelFunc{}}
}

// handle starts (or cancels) the requests of a session message.
func (r *requests) handle(ctx context.Context, rs []*pb.AgentRequest) {
	for _, req := range rs {
		if req.GetCancel() {
			r.cancel(req.GetId())
			continue
		}
		switch k := req.GetKind().(type) {
		case *pb.AgentRequest_Logs:
			r.start(ctx, req.GetId(), func(ctx context.Context) error { return r.serveLogs(ctx, req.GetId(), k.Logs) })
		case *pb.AgentRequest_Exec:
			r.start(ctx, req.GetId(), func(ctx context.Context) error { return r.serveExec(ctx, req.GetId(), k.Exec) })
		case *pb.AgentRequest_Stats:
			r.start(ctx, req.GetId(), func(ctx context.Context) error { return r.serveStats(ctx, req.GetId(), k.Stats) })
		default:
			r.log.Warn("a request of a kind this agent does not serve; upgrade the agent", "request", req.GetId())
		}
	}
}

func (r *requests) start(ctx context.Context, id string, serve func(context.Context) error) {
	ctx, cancel := context.WithCancel(ctx)
	r.mu.Lock()
	r.running[id] = cancel
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		defer r.cancel(id)
		if err := serve(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("serving a request", "request", id, "err", err)
		}
	}()
}

func (r *requests) cancel(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if cancel, ok := r.running[id]; ok {
		cancel()
		delete(r.running, id)
	}
}

// stop cancels every request and waits for them to end.
func (r *requests) stop() {
	r.mu.Lock()
	for id, cancel := range r.running {
		cancel()
		delete(r.running, id)
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// Bounds of one PublishLogs message.
const (
	logBatchLines = 512
	logBatchBytes = 64 << 10
)

// serveLogs sends a task's log records on a PublishLogs stream, batched
// as fast as the manager takes them, and closes the stream at the end. A
// task with no container here has an empty log.
func (r *requests) serveLogs(ctx context.Context, id string, req *pb.TaskLogsRequest) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := r.client.PublishLogs(ctx)
	if err != nil {
		return err
	}
	opts := runtime.LogOptions{Follow: req.GetFollow(), Tail: -1}
	if req.Tail != nil {
		opts.Tail = int(max(req.GetTail(), 0))
	}
	if s := req.GetSinceUnixNano(); s > 0 {
		opts.Since = time.Unix(0, s)
	}
	lines := make(chan *pb.LogMessage, logBatchLines)
	sent := make(chan error, 1)
	go func() { sent <- sendLogBatches(stream, r.sid, id, lines, cancel) }()
	rerr := r.logs.LogEntries(ctx, req.GetTaskId(), opts, func(e runtime.LogEntry) error {
		m := &pb.LogMessage{TaskId: req.GetTaskId(), Data: e.Data}
		if !e.Time.IsZero() {
			m.TimestampUnixNano = e.Time.UnixNano()
		}
		if e.Stderr {
			m.Stream = pb.LogMessage_STREAM_STDERR
		}
		select {
		case lines <- m:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	close(lines)
	if serr := <-sent; serr != nil {
		return serr
	}
	if rerr != nil && !errors.Is(rerr, runtime.ErrNotFound) && ctx.Err() == nil {
		_ = stream.Send(&pb.PublishLogsRequest{SessionId: r.sid, RequestId: id, Error: rerr.Error()})
	}
	_, err = stream.CloseAndRecv()
	return err
}

// sendLogBatches sends the first message (naming the request), then the
// lines in batches, until lines is closed; a failed send cancels the read.
func sendLogBatches(stream pb.Dispatcher_PublishLogsClient, sid, id string, lines <-chan *pb.LogMessage, cancel func()) error {
	if err := stream.Send(&pb.PublishLogsRequest{SessionId: sid, RequestId: id}); err != nil {
		cancel()
		return err
	}
	for m := range lines {
		batch, size := []*pb.LogMessage{m}, len(m.GetData())
	more:
		for len(batch) < logBatchLines && size < logBatchBytes {
			select {
			case m, ok := <-lines:
				if !ok {
					break more
				}
				batch, size = append(batch, m), size+len(m.GetData())
			default:
				break more
			}
		}
		if err := stream.Send(&pb.PublishLogsRequest{SessionId: sid, Messages: batch}); err != nil {
			cancel()
			for range lines { // let the reader finish
			}
			return err
		}
	}
	return nil
}
