package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"berth/agent/image"
	"berth/agent/runtime"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// fakeExec is an Executor in memory.
type fakeExec struct {
	mu         sync.Mutex
	pullErr    error
	pullGate   chan struct{} // when set, Pull waits for it (or ctx)
	runErr     error
	execCode   int // exit code of every Exec (health probes)
	containers map[string]*fakeCtr
	runs       []string
	removed    []string
	nextPid    int
}

func newFakeExec() *fakeExec { return &fakeExec{containers: map[string]*fakeCtr{}, nextPid: 100} }

func (f *fakeExec) Pull(ctx context.Context, ref string, progress func(image.Progress), _ ...image.PullOption) (image.Image, error) {
	f.mu.Lock()
	gate, err := f.pullGate, f.pullErr
	f.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return image.Image{}, ctx.Err()
		}
	}
	if err != nil {
		return image.Image{}, err
	}
	progress(image.Progress{Ref: ref, Layer: "sha256:a", Layers: 1, BytesDone: 3 << 20, BytesTotal: 5 << 20})
	return image.Image{Ref: ref, Config: image.RunConfig{Cmd: []string{"sh"}}}, nil
}

func (f *fakeExec) Prepare(ctx context.Context, key string, img image.Image) (string, error) {
	return "/fake/rootfs/" + key, nil
}

func (f *fakeExec) Run(ctx context.Context, spec runtime.Spec) (Container, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.runErr != nil {
		return nil, f.runErr
	}
	if _, ok := f.containers[spec.ID]; ok {
		return nil, runtime.ErrExists
	}
	// As the runtime does: PreStart sees the new container's pid before
	// it runs, and its error leaves no container.
	if spec.PreStart != nil {
		if err := spec.PreStart(ctx, f.nextPid+1); err != nil {
			return nil, fmt.Errorf("run %s: pre-start: %w", spec.ID, err)
		}
	}
	f.runs = append(f.runs, spec.ID)
	c := f.add(spec.ID)
	c.spec = spec
	return c, nil
}

// add makes a running container, as Run or an earlier agent did.
func (f *fakeExec) add(id string) *fakeCtr {
	f.nextPid++
	c := &fakeCtr{id: id, pid: f.nextPid, done: make(chan struct{}), exec: f}
	f.containers[id] = c
	return c
}

func (f *fakeExec) Container(id string) (Container, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.containers[id]
	return c, ok
}

func (f *fakeExec) get(id string) *fakeCtr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.containers[id]
}

func (f *fakeExec) Remove(ctx context.Context, id string) error {
	f.mu.Lock()
	c := f.containers[id]
	delete(f.containers, id)
	f.removed = append(f.removed, id)
	f.mu.Unlock()
	if c != nil {
		c.end(runtime.ExitStatus{Code: 137, Signal: 9, Reason: runtime.ReasonKilled})
	}
	return nil
}

func (f *fakeExec) IDs(ctx context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id := range f.containers {
		ids = append(ids, id)
	}
	return ids, nil
}

func (f *fakeExec) wasRemoved(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.removed, id)
}

func (f *fakeExec) runCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.runs)
}

// fakeCtr is a container that runs until told to end.
type fakeCtr struct {
	id    string
	pid   int
	spec  runtime.Spec
	exec  *fakeExec
	once  sync.Once
	done  chan struct{}
	mu    sync.Mutex
	st    runtime.ExitStatus
	grace time.Duration
}

func (c *fakeCtr) ID() string { return c.id }
func (c *fakeCtr) Pid() int   { return c.pid }

func (c *fakeCtr) end(st runtime.ExitStatus) {
	c.once.Do(func() {
		c.mu.Lock()
		st.FinishedAt = time.Now()
		c.st = st
		c.mu.Unlock()
		close(c.done)
	})
}

func (c *fakeCtr) Wait(ctx context.Context) (runtime.ExitStatus, error) {
	select {
	case <-c.done:
		return c.status(), nil
	case <-ctx.Done():
		return runtime.ExitStatus{}, ctx.Err()
	}
}

func (c *fakeCtr) status() runtime.ExitStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

func (c *fakeCtr) Stop(ctx context.Context, grace time.Duration) (runtime.ExitStatus, error) {
	c.mu.Lock()
	c.grace = grace
	c.mu.Unlock()
	c.end(runtime.ExitStatus{Code: 143, Signal: 15, Reason: runtime.ReasonKilled})
	return c.status(), nil
}

func (c *fakeCtr) stopGrace() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.grace
}

func (c *fakeCtr) Exec(ctx context.Context, e runtime.ExecSpec) (int, error) {
	c.exec.mu.Lock()
	defer c.exec.mu.Unlock()
	return c.exec.execCode, nil
}

func (c *fakeCtr) Exited() (runtime.ExitStatus, bool) {
	select {
	case <-c.done:
		return c.status(), true
	default:
		return runtime.ExitStatus{}, false
	}
}

// fakeSecrets records nothing on disk.
type fakeSecrets struct{}

func (fakeSecrets) Mounts(string, *pb.ContainerSpec) ([]runtime.Mount, error) { return nil, nil }
func (fakeSecrets) Remove(string) error                                       { return nil }
func (fakeSecrets) IDs() []string                                             { return nil }

// recorder keeps every status reported, per task.
type recorder struct {
	mu sync.Mutex
	by map[string][]*pb.TaskStatus
}

func (r *recorder) put(id string, st *pb.TaskStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.by[id] = append(r.by[id], st)
}

func (r *recorder) all(id string) []*pb.TaskStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.by[id])
}

func (r *recorder) last(id string) *pb.TaskStatus {
	all := r.all(id)
	if len(all) == 0 {
		return nil
	}
	return all[len(all)-1]
}

// rig is a worker over fakes.
type rig struct {
	exec *fakeExec
	rec  *recorder
	w    *worker
	ctx  context.Context
}

// newRig starts a worker over fakes; net, if given, is its overlay.
func newRig(t *testing.T, net ...networking) *rig {
	t.Helper()
	return newRigWith(t, func(*taskEnv) {}, net...)
}

// newRigWith is newRig with the task env adjusted by set before the worker
// starts.
func newRigWith(t *testing.T, set func(*taskEnv), net ...networking) *rig {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{exec: newFakeExec(), rec: &recorder{by: map[string][]*pb.TaskStatus{}}, ctx: ctx}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	env := &taskEnv{exec: r.exec, secrets: fakeSecrets{}, report: r.rec.put, now: time.Now, log: log}
	if len(net) > 0 {
		env.net = net[0]
	}
	set(env)
	r.w = newWorker(env, newFileStore())
	done := make(chan struct{})
	go func() { defer close(done); r.w.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; r.checkForward(t) })
	return r
}

func (r *rig) assign(t *testing.T, full bool, tasks ...*pb.Task) {
	t.Helper()
	var ch []*pb.AssignmentChange
	for _, tk := range tasks {
		ch = append(ch, &pb.AssignmentChange{Item: &pb.AssignmentChange_Task{Task: tk}})
	}
	if err := r.w.Assign(r.ctx, full, ch); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) removeTask(t *testing.T, id string) {
	t.Helper()
	ch := []*pb.AssignmentChange{{Action: pb.AssignmentChange_ACTION_REMOVE, Item: &pb.AssignmentChange_Task{Task: &pb.Task{Id: id}}}}
	if err := r.w.Assign(r.ctx, false, ch); err != nil {
		t.Fatal(err)
	}
}

// waitState waits until task id's latest reported state is want.
func (r *rig) waitState(t *testing.T, id string, want pb.TaskState) *pb.TaskStatus {
	t.Helper()
	await.True(t, 5*time.Second, func() bool { return r.rec.last(id).GetState() == want },
		"task %s: want state %s, statuses %v", id, want, stateList{r, id})
	return r.rec.last(id)
}

// checkForward fails if any task's reported states ever went backwards
// or a status lacked a timestamp.
func (r *rig) checkForward(t *testing.T) {
	r.rec.mu.Lock()
	defer r.rec.mu.Unlock()
	for id, sts := range r.rec.by {
		for i, st := range sts {
			if st.GetTimestamp() == nil {
				t.Errorf("task %s: status %d has no timestamp", id, i)
			}
			if i > 0 && st.GetState() < sts[i-1].GetState() {
				t.Errorf("task %s: state went back from %s to %s", id, sts[i-1].GetState(), st.GetState())
			}
		}
	}
}

type stateList struct {
	r  *rig
	id string
}

func (s stateList) String() string {
	var out []string
	for _, st := range s.r.rec.all(s.id) {
		out = append(out, fmt.Sprintf("%s(%q %q)", st.GetState(), st.GetMessage(), st.GetErr()))
	}
	return fmt.Sprint(out)
}
