package agent

import (
	"context"
	"sync"

	pb "berth/proto/berth/v1"
)

// assignment is one session message's worth of assigned objects.
type assignment struct {
	full    bool
	changes []*pb.AssignmentChange
}

// worker is the reconciler: it keeps one controller per assigned task,
// hands each its task's changes, and removes containers, root filesystems
// and secrets and configs that no assigned task needs.
type worker struct {
	env   *taskEnv
	net   *overlay // nil without overlay networking
	names *names   // the DNS server; nil without overlay networking
	// attach takes the attachment tasks (standalone containers on
	// attachable networks): no controller runs a container for them.
	attach *attachments
	// others lists the containers of berth-agent run on the node: they
	// share its image store (their snapshots) and are not the worker's.
	others func() map[string]bool
	files  *fileStore
	in     chan assignment

	mu    sync.Mutex
	tasks map[string]*controller
}

func newWorker(env *taskEnv, files *fileStore) *worker {
	return &worker{env: env, files: files, in: make(chan assignment, 16), tasks: map[string]*controller{}}
}

// Assign queues a session message's assignments for Run.
func (w *worker) Assign(ctx context.Context, full bool, changes []*pb.AssignmentChange) error {
	select {
	case w.in <- assignment{full: full, changes: changes}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run applies assignments until ctx ends, then waits for every controller
// to stop. Containers keep running: the next agent adopts them.
func (w *worker) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case a := <-w.in:
			w.apply(ctx, &wg, a)
		}
	}
}

func (w *worker) apply(ctx context.Context, wg *sync.WaitGroup, a assignment) {
	// Networks and peers first: tasks of the same message attach to them.
	if w.net != nil {
		var tasks []*pb.Task
		for _, ch := range a.changes {
			if t := ch.GetTask(); t != nil && ch.GetAction() != pb.AssignmentChange_ACTION_REMOVE {
				tasks = append(tasks, t)
			}
		}
		w.net.apply(a.full, a.changes, tasks)
	}
	if w.names != nil {
		w.names.apply(ctx, a.full, a.changes)
	}
	// Secrets and configs first: tasks of the same message may need them.
	files := map[fileKey]bool{}
	for _, ch := range a.changes {
		key, data, ok := fileOf(ch)
		if !ok {
			continue
		}
		if ch.GetAction() == pb.AssignmentChange_ACTION_REMOVE {
			w.files.remove(key)
			continue
		}
		files[key] = true
		if data != nil {
			w.files.set(key, data)
		}
	}
	assigned := map[string]bool{}
	var attachTasks []*pb.Task
	var removed []string
	for _, ch := range a.changes {
		t := ch.GetTask()
		switch {
		case t == nil || t.GetId() == "":
		case ch.GetAction() == pb.AssignmentChange_ACTION_REMOVE:
			w.removeTask(t.GetId())
			removed = append(removed, t.GetId())
		case isAttachment(t):
			attachTasks = append(attachTasks, t)
		default:
			assigned[t.GetId()] = true
			w.updateTask(ctx, wg, t)
		}
	}
	if w.attach != nil {
		w.attach.assign(ctx, a.full, attachTasks, removed)
	}
	if a.full {
		w.retain(assigned, files)
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.sweep(ctx)
		}()
	}
}

func (w *worker) updateTask(ctx context.Context, wg *sync.WaitGroup, t *pb.Task) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.tasks[t.GetId()]; ok {
		c.update(t)
		return
	}
	c := newController(t, w.env)
	w.tasks[t.GetId()] = c
	wg.Add(1)
	go func() {
		defer wg.Done()
		c.run(ctx)
		w.forget(c)
	}()
}

func (w *worker) removeTask(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if c, ok := w.tasks[id]; ok {
		c.remove()
	}
}

// forget drops a controller whose run ended.
func (w *worker) forget(c *controller) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.tasks[c.id] == c {
		delete(w.tasks, c.id)
	}
	if w.env.forget != nil && c.isRemoved() {
		w.env.forget(c.id)
	}
}

// retain removes the tasks, secrets and configs a full assignment no
// longer holds.
func (w *worker) retain(tasks map[string]bool, files map[fileKey]bool) {
	w.mu.Lock()
	for id, c := range w.tasks {
		if !tasks[id] {
			c.remove()
		}
	}
	w.mu.Unlock()
	w.files.retain(files)
}

// sweep removes containers, root filesystems, secret, config and resolv.conf files that belong
// to no task this node runs (left by tasks removed while the agent was
// down), but never the root filesystem of a container of berth-agent run.
func (w *worker) sweep(ctx context.Context) {
	ids, err := w.env.exec.IDs(ctx)
	if err != nil {
		w.env.log.Warn("list containers to sweep", "err", err)
	}
	ids = append(ids, w.env.secrets.IDs()...)
	if w.env.dns != nil {
		ids = append(ids, w.env.dns.IDs()...)
	}
	others := map[string]bool{}
	if w.others != nil {
		others = w.others()
	}
	for _, id := range ids {
		w.mu.Lock()
		_, busy := w.tasks[id]
		w.mu.Unlock()
		if busy || others[id] || ctx.Err() != nil {
			continue
		}
		w.env.log.Info("removing container of a task no longer assigned", "task", id)
		if err := w.env.exec.Remove(ctx, id); err != nil {
			w.env.log.Warn("remove unassigned container", "task", id, "err", err)
		}
		if err := w.env.secrets.Remove(id); err != nil {
			w.env.log.Warn("remove unassigned secrets", "task", id, "err", err)
		}
		if w.env.dns != nil {
			if err := w.env.dns.Remove(id); err != nil {
				w.env.log.Warn("remove unassigned resolv.conf", "task", id, "err", err)
			}
		}
	}
}

// running lists the IDs of tasks with a controller, for tests and status.
func (w *worker) running() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	ids := make([]string, 0, len(w.tasks))
	for id := range w.tasks {
		ids = append(ids, id)
	}
	return ids
}
