package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// rollout is a service under update on real hosts, and what a sampler saw
// of it while the update ran.
type rollout struct {
	t        *testing.T
	c        *e2ecluster.Cluster
	via      *e2ecluster.Node // the manager the CLI talks to
	name     string
	replicas int
}

func (r *rollout) cli(ctx context.Context, args ...string) (string, error) {
	return r.c.CLIOn(ctx, r.via, args...)
}

// tasks lists the service's tasks through the CLI of r.via.
func (r *rollout) tasks(ctx context.Context) ([]*pb.Task, error) {
	out, err := r.cli(ctx, "service", "ps", r.name, "--format", "json")
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil {
		return nil, err
	}
	tasks := make([]*pb.Task, 0, len(raw))
	for _, m := range raw {
		t := &pb.Task{}
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(m, t); err != nil {
			return nil, err
		}
		tasks = append(tasks, t)
	}
	return tasks, nil
}

func (r *rollout) service(ctx context.Context) (*pb.Service, error) {
	return inspectService(ctx, r.cli, r.name)
}

// inspectService reads a service through `berth service inspect`.
func inspectService(ctx context.Context, cli func(context.Context, ...string) (string, error), name string) (*pb.Service, error) {
	out, err := cli(ctx, "service", "inspect", name)
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 1 {
		return nil, fmt.Errorf("service inspect: %q: %v", out, err)
	}
	s := &pb.Service{}
	return s, (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw[0], s)
}

// version is what a task runs: its image tag's version, with "+bad" when
// it was told to listen on a port that is not one (it exits 1).
func version(t *pb.Task) string {
	c := t.GetSpec().GetContainer()
	v := c.GetImage()[strings.LastIndex(c.GetImage(), ":")+1:]
	if slices.Contains(c.GetEnv(), "PORT=bad") {
		v += "+bad"
	}
	return v
}

// awaitAll waits until every slot runs version want and nothing else is live.
func (r *rollout) awaitAll(want string) []*pb.Task {
	r.t.Helper()
	var tasks []*pb.Task
	await.NoError(r.t, wait, func() error {
		var err error
		if tasks, err = r.tasks(r.t.Context()); err != nil {
			return err
		}
		slots := map[uint64]bool{}
		for _, tk := range tasks {
			if tk.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			if tk.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING || version(tk) != want || slots[tk.GetSlot()] {
				return fmt.Errorf("slot %d: %s task %v", tk.GetSlot(), version(tk), tk.GetStatus().GetState())
			}
			slots[tk.GetSlot()] = true
		}
		if len(slots) != r.replicas {
			return fmt.Errorf("%d of %d slots run %s", len(slots), r.replicas, want)
		}
		return nil
	}, "every slot of %s runs %s", r.name, want)
	return tasks
}

// createdSince counts, per slot, the tasks of version v made after since.
func createdSince(tasks []*pb.Task, v string, since time.Time) map[uint64]int {
	out := map[uint64]int{}
	for _, tk := range tasks {
		if version(tk) == v && tk.GetMeta().GetCreatedAt().AsTime().After(since) {
			out[tk.GetSlot()]++
		}
	}
	return out
}

// updatesSince counts, per slot, the updates to version v after since: a
// task of v following one of another version. A task replaced by one of
// the same version (its node was lost, it crashed) is no update.
func updatesSince(tasks []*pb.Task, v string, since time.Time) map[uint64]int {
	bySlot := map[uint64][]*pb.Task{}
	for _, tk := range tasks {
		bySlot[tk.GetSlot()] = append(bySlot[tk.GetSlot()], tk)
	}
	out := map[uint64]int{}
	for slot, ts := range bySlot {
		slices.SortFunc(ts, func(a, b *pb.Task) int {
			return a.GetMeta().GetCreatedAt().AsTime().Compare(b.GetMeta().GetCreatedAt().AsTime())
		})
		for i := 1; i < len(ts); i++ {
			if version(ts[i]) == v && version(ts[i-1]) != v && ts[i].GetMeta().GetCreatedAt().AsTime().After(since) {
				out[slot]++
			}
		}
	}
	return out
}

// sampler polls the service's tasks while an update runs and keeps the
// most slots without a running task that managers want running.
type sampler struct {
	mu      sync.Mutex
	maxDown int
	samples int
	stop    func()
	done    chan struct{}
}

func (r *rollout) sample() *sampler {
	ctx, cancel := context.WithCancel(r.t.Context())
	s := &sampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			tasks, err := r.tasks(ctx)
			if err == nil {
				up := map[uint64]bool{}
				for _, tk := range tasks {
					if tk.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
						up[tk.GetSlot()] = true
					}
				}
				s.mu.Lock()
				s.maxDown, s.samples = max(s.maxDown, r.replicas-len(up)), s.samples+1
				s.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *sampler) finish() (maxDown, samples int) {
	s.stop()
	<-s.done
	return s.maxDown, s.samples
}

// TestRollingUpdatesOnRealHosts rolls a 6-replica service of the test app
// over 3 managers and 2 agents: v1 → v2 batch by batch; a bad update
// (the app exits 1) that rolls back by itself, one that pauses, a manual
// rollback, and a kill -9 of the leader in the middle of an update.
func TestRollingUpdatesOnRealHosts(t *testing.T) {
	c := up(t, 3, 2, nil)
	ctx := t.Context()
	r := &rollout{t: t, c: c, via: c.Managers[0], name: "web", replicas: 6}
	if _, err := r.cli(ctx, "service", "create", "--name", "web", "--replicas", "6", "--update-parallelism", "2",
		"--update-monitor", "3s", "--rollback-parallelism", "0", "--rollback-monitor", "1s", "--restart-delay", "1s", c.Images.AppV1.Tag); err != nil {
		t.Fatal(err)
	}
	r.awaitAll("v1")

	t.Run("bad update rolls back by itself", func(t *testing.T) {
		since := time.Now()
		out, err := r.cli(ctx, "service", "update", "--env-add", "PORT=bad", "--update-failure-action", "rollback", "--update-delay", "2s", "web")
		if err == nil || !strings.Contains(err.Error(), "update rolled back") {
			t.Fatalf("update that fails: err %v, out:\n%s", err, out)
		}
		if !strings.Contains(out, "verify: Service converged") {
			t.Errorf("progress shows no rollback:\n%s", out)
		}
		tasks := r.awaitAll("v1")
		if bad := createdSince(tasks, "v1+bad", since); len(bad) > 2 {
			t.Errorf("the bad spec reached slots %v; parallelism 2 and a 2s delay should stop it after the first batch", bad)
		}
		svc, err := r.service(ctx)
		if err != nil || svc.GetUpdateStatus().GetState() != pb.UpdateStatus_STATE_ROLLBACK_COMPLETED {
			t.Fatalf("update status %v, %v; want rollback completed", svc.GetUpdateStatus(), err)
		}
		t.Logf("auto rollback: bad tasks in slots %v, back on v1", createdSince(tasks, "v1+bad", since))
	})

	t.Run("bad update pauses, manual rollback", func(t *testing.T) {
		since := time.Now()
		out, err := r.cli(ctx, "service", "update", "--env-add", "PORT=bad", "--update-failure-action", "pause", "--update-delay", "2s", "web")
		if err == nil || !strings.Contains(err.Error(), "update paused due to failure or early termination of task") || !strings.Contains(err.Error(), ": exit 1") {
			t.Fatalf("update that fails: err %v, out:\n%s", err, out)
		}
		ls, _ := r.cli(ctx, "service", "ls")
		pretty, _ := r.cli(ctx, "service", "inspect", "--pretty", "web")
		if !strings.Contains(ls, "paused") || !strings.Contains(pretty, "State:\t\tpaused") || !strings.Contains(pretty, "exit") {
			t.Errorf("paused update not shown:\n%s\n%s", ls, pretty)
		}
		tasks, _ := r.tasks(ctx)
		if bad := createdSince(tasks, "v1+bad", since); len(bad) > 2 {
			t.Errorf("a paused update touched slots %v; want only the first batch of 2", bad)
		}
		out, err = r.cli(ctx, "service", "rollback", "web")
		if err != nil || !strings.Contains(out, "verify: Service converged") {
			t.Fatalf("service rollback: %v\n%s", err, out)
		}
		r.awaitAll("v1")
		svc, _ := r.service(ctx)
		if svc.GetUpdateStatus().GetState() != pb.UpdateStatus_STATE_ROLLBACK_COMPLETED {
			t.Errorf("after rollback: %v", svc.GetUpdateStatus())
		}
	})

	t.Run("v1 to v2 batch by batch", func(t *testing.T) {
		since := time.Now()
		s := r.sample()
		out, err := r.cli(ctx, "service", "update", "--env-rm", "PORT", "--image", c.Images.AppV2.Tag, "web")
		maxDown, samples := s.finish()
		if err != nil || !strings.Contains(out, "overall progress: 6 out of 6 tasks") || !strings.Contains(out, "verify: Service converged") {
			t.Fatalf("update to v2: %v\n%s", err, out)
		}
		tasks := r.awaitAll("v2")
		if per := createdSince(tasks, "v2", since); len(per) != 6 || slices.Max(mapValues(per)) != 1 {
			t.Errorf("v2 tasks per slot %v, want one in each of 6", per)
		}
		if maxDown > 2 {
			t.Errorf("%d slots down at once during a stop-first update of parallelism 2", maxDown)
		}
		t.Logf("v1 → v2: at most %d slots down in %d samples\n%s", maxDown, samples, out)
	})

	t.Run("leader killed mid-update", func(t *testing.T) {
		leader := leaderOf(t, r)
		for _, m := range c.Managers {
			if m != leader {
				r.via = m
				break
			}
		}
		since := time.Now()
		if _, err := r.cli(ctx, "service", "update", "--detach", "--image", c.Images.AppV1.Tag, "--update-parallelism", "1", "--update-delay", "2s", "web"); err != nil {
			t.Fatal(err)
		}
		await.True(t, wait, func() bool {
			tasks, err := r.tasks(ctx)
			return err == nil && len(createdSince(tasks, "v1", since)) >= 2
		}, "two slots on v1")
		if err := c.Kill9(leader); err != nil {
			t.Fatal(err)
		}
		t.Logf("killed leader %s with -9 after 2 of 6 slots", leader.Name)
		tasks := r.awaitAll("v1")
		if per := updatesSince(tasks, "v1", since); len(per) != 6 || slices.Max(mapValues(per)) != 1 {
			t.Errorf("updates to v1 per slot across the leader change %v, want one in each of 6", per)
			all, _ := r.tasks(ctx)
			for _, tk := range all {
				t.Logf("slot %d %s %s node %s created %s desired %v state %v msg %q err %q", tk.GetSlot(), tk.GetId(), version(tk), tk.GetNodeId(),
					tk.GetMeta().GetCreatedAt().AsTime().Format("15:04:05.000"), tk.GetDesiredState(), tk.GetStatus().GetState(), tk.GetStatus().GetMessage(), tk.GetStatus().GetErr())
			}
			nodes, _ := r.cli(ctx, "node", "ls")
			t.Log(nodes)
		}
		await.True(t, wait, func() bool {
			svc, err := r.service(ctx)
			return err == nil && svc.GetUpdateStatus().GetState() == pb.UpdateStatus_STATE_COMPLETED
		}, "the new leader completes the update")
	})
}

func mapValues(m map[uint64]int) []int {
	var out []int
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// leaderOf finds the manager that leads, by its node's manager status
// and address (managers share the machine's hostname).
func leaderOf(t *testing.T, r *rollout) *e2ecluster.Node {
	t.Helper()
	nodes, err := r.c.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Node.GetManagerStatus().GetLeader() {
			addr := n.Node.GetDescription().GetAddr()
			for _, m := range r.c.Managers {
				if addr == m.Addr() || strings.HasPrefix(addr, m.Host.Addr.String()+":") || addr == m.Host.Addr.String() {
					return m
				}
			}
			t.Fatalf("the leader's address %q is no manager's", addr)
		}
	}
	t.Fatal("no leader among the managers")
	return nil
}
