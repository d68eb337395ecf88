package agent

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// attachWait bounds the wait for an attachment task to reach the node in
// the assignment stream once the managers made it (they send it at once;
// a session being re-established takes a few seconds).
const attachWait = 30 * time.Second

// attachAPI is what attachments need of the managers (Dispatcher's
// AttachNetwork and DetachNetwork, through the daemon's session).
type attachAPI interface {
	AttachNetwork(ctx context.Context, req *pb.AttachNetworkRequest) (*pb.Task, error)
	DetachNetwork(ctx context.Context, attachmentID string) error
}

// attachNet is the node's overlay as attachments use it: the task
// controllers' Attach and Detach, and whether a network is built here.
type attachNet interface {
	networking
	built(networkID string) bool
}

// attachments are the node's standalone containers on attachable
// networks (berth-agent run --network). Each has an attachment task
// (TaskSpec.attachment): the managers make it on AttachNetwork and send
// it to this node with its networks; the container's namespace is wired
// with the overlay code of tasks, so it gets VIP tables and its peers as a
// task does. No container controller ever sees these tasks. A record per
// container in the data dir lets a restarted daemon adopt them.
type attachments struct {
	dir    string
	net    attachNet // nil without overlay networking
	dns    func(networkID string) (string, bool)
	mgr    attachAPI
	report func(taskID string, st *pb.TaskStatus)
	forget func(taskID string)
	wait   time.Duration
	now    func() time.Time
	log    *slog.Logger
	kick   chan struct{} // wakes run: jobs are queued

	qmu    sync.Mutex
	queue  []func(context.Context)
	closed bool // run has returned: jobs are dropped

	mu      sync.Mutex
	recs    map[string]*attachRecord // by container ID
	tasks   map[string]*pb.Task      // attachment tasks assigned here, by ID
	changed chan struct{}            // closed and replaced on every assignment
	pending map[string]bool          // container IDs being attached
	// ending are the attachment tasks ended here, or being ended, while
	// the managers still assign them: not orphans to end again.
	ending map[string]bool
}

func newAttachments(dir string, mgr attachAPI, report func(string, *pb.TaskStatus), forget func(string), log *slog.Logger) *attachments {
	return &attachments{
		dir: dir, mgr: mgr, report: report, forget: forget, wait: attachWait, now: time.Now, log: log,
		kick: make(chan struct{}, 1),
		recs: map[string]*attachRecord{}, tasks: map[string]*pb.Task{}, changed: make(chan struct{}),
		pending: map[string]bool{}, ending: map[string]bool{},
	}
}

// load reads the records an earlier daemon left; run then watches the
// containers still alive and detaches the others. Call it before the
// first assignment.
func (a *attachments) load() error {
	recs, err := loadRecords(a.dir)
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, r := range recs {
		r.adopted = true
		a.recs[r.ContainerID] = r
	}
	return err
}

// run adopts the loaded records and runs the watches and detaches until
// ctx ends; containers stay attached (the next daemon adopts them).
func (a *attachments) run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	a.mu.Lock()
	for _, r := range a.recs {
		a.startLocked(r)
	}
	a.mu.Unlock()
	for {
		for _, job := range a.take(ctx.Err() != nil) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				job(ctx)
			}()
		}
		select {
		case <-ctx.Done():
			a.take(true)
			return nil
		case <-a.kick:
		}
	}
}

// spawn queues a job for run, which runs each on a goroutine of its own
// with run's context; once run has returned, jobs are dropped. It never
// blocks: the reconciler and the local API call it.
func (a *attachments) spawn(job func(context.Context)) {
	a.qmu.Lock()
	if !a.closed {
		a.queue = append(a.queue, job)
	}
	a.qmu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// take empties the queue; closing, it also refuses jobs from now on.
func (a *attachments) take(closing bool) []func(context.Context) {
	a.qmu.Lock()
	defer a.qmu.Unlock()
	q := a.queue
	a.queue, a.closed = nil, closing
	return q
}

// startLocked starts r's watch: the container's end, or a detach, takes
// it off its networks. An ended or dead one is detached at once.
func (a *attachments) startLocked(r *attachRecord) {
	if r.watched {
		return
	}
	r.watched = true
	if r.Ended {
		r.stop()
	}
	a.spawn(func(ctx context.Context) {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() {
			select {
			case <-r.stopped:
				cancel()
			case <-wctx.Done():
			}
		}()
		_ = waitProc(wctx, r.Pid, r.Start) // nil: it ended; an error: stopped
		if ctx.Err() != nil {
			return // the daemon exits: the next one adopts it
		}
		why := "detached"
		if !sameProc(r.Pid, r.Start) {
			why = "container ended"
		}
		a.end(ctx, r, why)
	})
}

// end takes r's container off its networks here, reports its attachment
// COMPLETE, tells the managers (retrying while they cannot be reached) and
// forgets it. If the daemon exits first, the record stays, marked ended,
// for the next one.
func (a *attachments) end(ctx context.Context, r *attachRecord, why string) {
	a.mu.Lock()
	t := r.task
	a.mu.Unlock()
	if a.net != nil && t != nil {
		a.net.Detach(t)
	}
	a.report(r.TaskID, &pb.TaskStatus{State: pb.TaskState_TASK_STATE_COMPLETE, Timestamp: timestamppb.New(a.now()), Message: why,
		Container: &pb.ContainerStatus{ContainerId: r.ContainerID, Pid: int64(r.Pid)}})
	a.mu.Lock()
	r.Ended = true
	err := r.save(a.dir)
	a.mu.Unlock()
	if err != nil {
		a.log.Warn("record an ended attachment", "container", r.ContainerID, "err", err)
	}
	if !a.detachRetrying(ctx, r.TaskID) {
		return
	}
	a.log.Info("container detached from its networks", "container", r.ContainerID, "attachment", r.TaskID, "why", why)
	a.mu.Lock()
	if a.recs[r.ContainerID] == r {
		delete(a.recs, r.ContainerID)
	}
	a.ending[r.TaskID] = true // until the managers stop assigning it
	a.mu.Unlock()
	if err := removeRecord(a.dir, r.ContainerID); err != nil {
		a.log.Warn("forget an attachment", "container", r.ContainerID, "err", err)
	}
	close(r.done)
}

// detachRetrying calls DetachNetwork until the managers take it or ctx
// ends (false).
func (a *attachments) detachRetrying(ctx context.Context, taskID string) bool {
	b := backoff{min: 200 * time.Millisecond, max: 5 * time.Second}
	for {
		err := a.mgr.DetachNetwork(ctx, taskID)
		switch status.Code(err) {
		case codes.OK, codes.NotFound:
			return true
		case codes.InvalidArgument, codes.PermissionDenied:
			a.log.Error("the managers refused to end an attachment; giving up", "attachment", taskID, "err", err)
			return true
		}
		a.log.Debug("end attachment: managers unreachable; will retry", "attachment", taskID, "err", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(b.next()):
		}
	}
}

// detach ends container id's attachment now and waits until it is done
// (or ctx ends); a container not attached is no error.
func (a *attachments) detach(ctx context.Context, id string) error {
	a.mu.Lock()
	r := a.recs[id]
	a.mu.Unlock()
	if r == nil || !r.watched {
		return nil
	}
	r.stop()
	select {
	case <-r.done:
		return nil
	case <-ctx.Done():
		return status.Errorf(codes.DeadlineExceeded, "detach %s: the managers have not confirmed yet; the node keeps trying", id)
	}
}

// validAttach checks an AttachContainer request, naming the field.
func validAttach(req *pb.AttachContainerRequest) (uint64, error) {
	if !runtime.ValidID(req.GetContainerId()) {
		return 0, status.Errorf(codes.InvalidArgument, "container_id %q: use 1-128 letters, digits, '_', '.' or '-'", req.GetContainerId())
	}
	if len(req.GetNetworks()) == 0 {
		return 0, status.Error(codes.InvalidArgument, "networks: give at least one network to attach to")
	}
	for _, n := range req.GetNetworks() {
		if n.GetTarget() == "" {
			return 0, status.Error(codes.InvalidArgument, "networks: a network's target is empty; give its name or ID")
		}
	}
	if req.GetPid() <= 0 {
		return 0, status.Errorf(codes.InvalidArgument, "pid %d: give the container's init, a process of this node", req.GetPid())
	}
	start, err := procStart(int(req.GetPid()))
	if err != nil {
		return 0, status.Errorf(codes.InvalidArgument, "pid %d: no such process on this node", req.GetPid())
	}
	if sameNetns(int(req.GetPid())) {
		return 0, status.Errorf(codes.FailedPrecondition, "pid %d shares the node's own network namespace (a container run with --network-host?): only a container with a network namespace of its own joins networks", req.GetPid())
	}
	return start, nil
}

// sameNetns says whether process pid is in the daemon's network namespace.
func sameNetns(pid int) bool {
	var mine, its unix.Stat_t
	if unix.Stat("/proc/self/ns/net", &mine) != nil || unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &its) != nil {
		return false
	}
	return mine.Dev == its.Dev && mine.Ino == its.Ino
}

// attach gives the container whose init is pid its places on the
// networks; see LocalAgent.AttachContainer.
func (a *attachments) attach(ctx context.Context, req *pb.AttachContainerRequest) (*pb.AttachContainerResponse, error) {
	if a.net == nil {
		return nil, status.Error(codes.FailedPrecondition, "this node's agent builds no overlay networks (berth-agent --overlay=false, or berth-manager --dev --overlay=false): run it with overlay networking to put containers on networks")
	}
	start, err := validAttach(req)
	if err != nil {
		return nil, err
	}
	id, began := req.GetContainerId(), time.Now()
	if err := a.claim(id); err != nil {
		return nil, err
	}
	defer a.release(id)
	t, err := a.mgr.AttachNetwork(ctx, &pb.AttachNetworkRequest{ContainerId: id, Networks: req.GetNetworks()})
	if err != nil {
		return nil, err
	}
	r := newRecord(id, int(req.GetPid()), start, t)
	a.mu.Lock()
	a.recs[id] = r
	err = r.save(a.dir)
	a.mu.Unlock()
	if err != nil {
		err = status.Errorf(codes.Internal, "%v", err)
	} else {
		t, err = a.wired(ctx, r)
	}
	if err != nil {
		a.undo(ctx, r)
		return nil, err
	}
	a.report(t.GetId(), &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING, Timestamp: timestamppb.New(a.now()), Message: "attached",
		Container: &pb.ContainerStatus{ContainerId: id, Pid: req.GetPid(), StartedAt: timestamppb.New(a.now())}})
	a.mu.Lock()
	a.startLocked(r)
	a.mu.Unlock()
	a.log.Info("container attached to networks", "container", id, "attachment", t.GetId(), "took", time.Since(began).Round(time.Millisecond))
	return a.answer(t), nil
}

// claim marks container id as being attached: one attached already, or
// being attached, is refused.
func (a *attachments) claim(id string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r := a.recs[id]; r != nil {
		return status.Errorf(codes.AlreadyExists, "container %s is attached already (pid %d); detach it first", id, r.Pid)
	}
	if a.pending[id] {
		return status.Errorf(codes.AlreadyExists, "container %s is being attached already", id)
	}
	a.pending[id] = true
	return nil
}

func (a *attachments) release(id string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.pending, id)
}

// wired waits until r's attachment task and its networks have reached
// the node, then wires the container's namespace as a task's.
func (a *attachments) wired(ctx context.Context, r *attachRecord) (*pb.Task, error) {
	t, err := a.arrival(ctx, r)
	if err != nil {
		return nil, err
	}
	if _, err := a.net.Attach(ctx, r.Pid, t); err != nil {
		return nil, status.Errorf(codes.Internal, "wire the container's network namespace: %v", err)
	}
	a.mu.Lock()
	r.registered = true
	a.mu.Unlock()
	return t, nil
}

// arrival waits for r's task, with addresses, and every network of it
// built on the node and served by its DNS.
func (a *attachments) arrival(ctx context.Context, r *attachRecord) (*pb.Task, error) {
	timer := time.NewTimer(a.wait)
	defer timer.Stop()
	for {
		a.mu.Lock()
		t, ch := a.tasks[r.TaskID], a.changed
		a.mu.Unlock()
		if t != nil && a.ready(t) {
			return t, nil
		}
		select {
		case <-ch:
		case <-timer.C:
			return nil, status.Errorf(codes.Unavailable, "the attachment %s has not reached this node within %s: is its session with the managers up?", r.TaskID, a.wait)
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
}

func (a *attachments) ready(t *pb.Task) bool {
	for _, n := range t.GetNetworks() {
		if len(n.GetAddresses()) == 0 || !a.net.built(n.GetNetworkId()) {
			return false
		}
		if _, ok := a.dns(n.GetNetworkId()); !ok {
			return false
		}
	}
	return len(t.GetNetworks()) > 0
}

// undo takes back a failed attach: the container's interfaces, the
// managers' attachment, the record.
func (a *attachments) undo(ctx context.Context, r *attachRecord) {
	a.net.Detach(r.task)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := a.mgr.DetachNetwork(dctx, r.TaskID); err != nil && status.Code(err) != codes.NotFound {
		a.log.Warn("end the attachment of a failed attach; the next full assignment ends it", "attachment", r.TaskID, "err", err)
	}
	a.mu.Lock()
	delete(a.recs, r.ContainerID)
	a.ending[r.TaskID] = true // until the managers stop assigning it
	a.mu.Unlock()
	if err := removeRecord(a.dir, r.ContainerID); err != nil {
		a.log.Warn("forget a failed attach", "container", r.ContainerID, "err", err)
	}
}

// answer is AttachContainer's answer for attachment task t: its
// addresses and, first network first, the DNS servers of its networks.
func (a *attachments) answer(t *pb.Task) *pb.AttachContainerResponse {
	resp := &pb.AttachContainerResponse{AttachmentId: t.GetId(), Networks: t.GetNetworks()}
	for _, n := range t.GetNetworks() {
		if ns, ok := a.dns(n.GetNetworkId()); ok {
			resp.Nameservers = append(resp.Nameservers, ns)
		}
	}
	return resp
}

// isAttachment says whether t is a standalone container's attachment
// rather than a service's task.
func isAttachment(t *pb.Task) bool { return t.GetSpec().GetAttachment() != nil }
