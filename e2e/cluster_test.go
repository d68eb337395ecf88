package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

const wait = 60 * time.Second

// runningOn waits until svc has exactly want running tasks, no other live
// ones, and at most one live task per slot; it returns them by node ID.
// Tasks on the nodes in lost (down, so they cannot report) are not counted.
func runningOn(t *testing.T, c *e2ecluster.Cluster, svc string, want int, lost ...string) map[string]int {
	t.Helper()
	var byNode map[string]int
	await.True(t, wait, func() bool {
		tasks, err := c.Tasks(t.Context(), svc)
		if err != nil {
			t.Logf("service ps: %v", err)
			return false
		}
		var n int
		n, byNode = e2ecluster.Running(tasks)
		live, slots := 0, map[uint64]int{}
		for _, tk := range tasks {
			if slices.Contains(lost, tk.GetNodeId()) && tk.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			if tk.GetDesiredState() <= pb.TaskState_TASK_STATE_RUNNING || tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
				live++
				if tk.GetSlot() != 0 {
					slots[tk.GetSlot()]++
				}
			}
		}
		for _, k := range slots {
			if k > 1 {
				return false
			}
		}
		return n == want && live == want
	}, "%s: %d tasks running, nothing else live, one per slot", svc, want)
	return byNode
}

func nodeStatus(t *testing.T, c *e2ecluster.Cluster, name, want string) time.Time {
	t.Helper()
	await.True(t, wait, func() bool {
		n, err := c.NodeByName(t.Context(), name)
		return err == nil && n.Status == want
	}, "node %s is %s", name, want)
	return time.Now()
}

// TestAgentsRunAServiceAndHealIt is the cluster a user deploys: three
// managers, three agents, a replicated service of real containers; then an
// agent dies, and a link is cut and restored.
func TestAgentsRunAServiceAndHealIt(t *testing.T) {
	c := up(t, 3, 3, nil)
	ctx := t.Context()

	nodes, err := c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	managers, leaders := 0, 0
	for _, n := range nodes {
		if n.Status != "ready" {
			t.Errorf("node %s is %s, want ready", n.Hostname, n.Status)
		}
		if n.Role == "manager" {
			managers++
			if n.Node.GetManagerStatus().GetLeader() {
				leaders++
			}
		}
	}
	if len(nodes) != 6 || managers != 3 || leaders != 1 {
		t.Fatalf("node ls: %d nodes, %d managers, %d leaders; want 6, 3, 1", len(nodes), managers, leaders)
	}

	out, err := c.CLI(ctx, "service", "create", "--name", "sleepers", "--replicas", "6", c.Images.Busybox.Tag, "sleep", "3600")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "6 out of 6 tasks running") || !strings.Contains(out, "converged") {
		t.Errorf("service create printed no progress to convergence:\n%s", out)
	}
	byNode := runningOn(t, c, "sleepers", 6)
	for _, a := range c.Agents {
		n, err := c.NodeByName(ctx, a.Name)
		if err != nil {
			t.Fatal(err)
		}
		if byNode[n.ID] != 2 {
			t.Errorf("agent %s runs %d tasks, want 2 (spread): %v", a.Name, byNode[n.ID], byNode)
		}
	}

	// An agent restarted at once adopts its containers: the same tasks
	// keep running in the same processes.
	restarted := c.Agents[0]
	rn, err := c.NodeByName(ctx, restarted.Name)
	if err != nil {
		t.Fatal(err)
	}
	pids := map[string]int64{}
	tasks, err := c.Tasks(ctx, "sleepers")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.GetNodeId() == rn.ID && tk.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING {
			pids[tk.GetId()] = tk.GetStatus().GetContainer().GetPid()
		}
	}
	restartAt := time.Now()
	if err := c.Restart(ctx, restarted); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool {
		tasks, err := c.Tasks(ctx, "sleepers")
		if err != nil {
			return false
		}
		seen := 0
		for _, tk := range tasks {
			if pid, ok := pids[tk.GetId()]; ok && tk.GetStatus().GetTimestamp().AsTime().After(restartAt) {
				if tk.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING || tk.GetStatus().GetContainer().GetPid() != pid {
					t.Fatalf("after the agent restart task %s is %s with pid %d, want running with pid %d",
						tk.GetId(), tk.GetStatus().GetState(), tk.GetStatus().GetContainer().GetPid(), pid)
				}
				seen++
			}
		}
		return seen == len(pids)
	}, "the restarted agent reports its %d tasks again, adopted", len(pids))
	runningOn(t, c, "sleepers", 6)

	// kill -9 an agent: its node goes down, its tasks run elsewhere.
	victim := c.Agents[2]
	killed := time.Now()
	if err := c.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	down := nodeStatus(t, c, victim.Name, "down")
	t.Logf("agent killed with -9: node down after %v (polled through the CLI)", down.Sub(killed).Round(10*time.Millisecond))
	vn, _ := c.NodeByName(ctx, victim.Name)
	byNode = runningOn(t, c, "sleepers", 6, vn.ID)
	if byNode[vn.ID] != 0 {
		t.Errorf("%d tasks still count as running on the dead node", byNode[vn.ID])
	}

	// It comes back: ready again, and its stale copies stop.
	if err := c.Restart(ctx, victim); err != nil {
		t.Fatal(err)
	}
	nodeStatus(t, c, victim.Name, "ready")
	runningOn(t, c, "sleepers", 6)

	// Cut a link: down; restore: ready.
	cut := c.Agents[1]
	if err := cut.Host.CutLink(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	down = nodeStatus(t, c, cut.Name, "down")
	t.Logf("link cut: node down after %v", down.Sub(start).Round(10*time.Millisecond))
	cn, _ := c.NodeByName(ctx, cut.Name)
	runningOn(t, c, "sleepers", 6, cn.ID)
	if err := cut.Host.RestoreLink(); err != nil {
		t.Fatal(err)
	}
	nodeStatus(t, c, cut.Name, "ready")
	runningOn(t, c, "sleepers", 6)

	// A new heartbeat period reaches every agent at its next heartbeat,
	// within its session.
	if out, err := c.CLI(ctx, "cluster", "update", "--heartbeat-period", "300ms"); err != nil || !strings.Contains(out, "300ms") {
		t.Fatalf("cluster update --heartbeat-period 300ms: %q, %v", out, err)
	}
	for _, a := range c.Agents {
		await.True(t, wait, func() bool {
			b, _ := os.ReadFile(a.Log)
			for _, line := range strings.Split(string(b), "\n") {
				if strings.Contains(line, `msg="heartbeat period changed"`) && strings.Contains(line, " period=300ms") {
					return true
				}
			}
			return false
		}, "agent %s heartbeats at 300ms", a.Name)
	}
	nodes, err = c.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Status != "ready" {
			t.Errorf("at the new period node %s is %s, want ready", n.Hostname, n.Status)
		}
	}
}

// TestOrchestrationOnRealHosts: scale, drain, global services, restart of
// a killed container, and the reason a service cannot be placed.
func TestOrchestrationOnRealHosts(t *testing.T) {
	c := up(t, 1, 3, func(i int) []string { return []string{fmt.Sprintf("zone=z%d", i%2)} })
	ctx := t.Context()
	bb := c.Images.Busybox.Tag

	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "web", "--replicas", "2", bb, "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "web", 2)
	if _, err := c.CLI(ctx, "service", "scale", "web=5"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "web", 5)
	if _, err := c.CLI(ctx, "service", "scale", "web=1"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "web", 1)
	tasks, err := c.Tasks(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING && tk.GetSlot() != 1 {
			t.Errorf("after scaling down to 1 the task of slot %d runs; the highest slots go first", tk.GetSlot())
		}
	}

	// A global service runs once per agent; draining a node moves tasks off.
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "everywhere", "--mode", "global", "--constraint", "node.role==worker", bb, "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "everywhere", 3)
	if _, err := c.CLI(ctx, "service", "scale", "web=3"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "web", 3)
	drained, err := c.NodeByName(ctx, c.Agents[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CLI(ctx, "node", "update", "--availability", "drain", drained.ID); err != nil {
		t.Fatal(err)
	}
	if byNode := runningOn(t, c, "web", 3); byNode[drained.ID] != 0 {
		t.Errorf("drained node still runs %d web tasks", byNode[drained.ID])
	}
	if byNode := runningOn(t, c, "everywhere", 2); byNode[drained.ID] != 0 {
		t.Errorf("drained node still runs the global task")
	}
	if _, err := c.CLI(ctx, "node", "update", "--availability", "active", drained.ID); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "everywhere", 3)
	// A new agent joins: the global service follows it.
	added, err := c.AddAgent(ctx)
	if err != nil {
		t.Fatal(err)
	}
	an, err := c.NodeByName(ctx, added.Name)
	if err != nil {
		t.Fatal(err)
	}
	if byNode := runningOn(t, c, "everywhere", 4); byNode[an.ID] != 1 {
		t.Errorf("the new agent %s runs %d tasks of the global service, want 1", added.Name, byNode[an.ID])
	}

	// kill -9 a container's main process: the task fails and a new one
	// takes its slot (restart condition any).
	tasks, err = c.Tasks(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	var victim *pb.Task
	for _, tk := range tasks {
		if tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING && tk.GetStatus().GetContainer().GetPid() > 0 {
			victim = tk
			break
		}
	}
	if victim == nil {
		t.Fatal("no running web task reports its container's PID")
	}
	if err := syscall.Kill(int(victim.GetStatus().GetContainer().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatalf("kill the container's process: %v", err)
	}
	await.True(t, wait, func() bool {
		tasks, err := c.Tasks(ctx, "web")
		if err != nil {
			return false
		}
		replaced, oldFailed := false, false
		for _, tk := range tasks {
			if tk.GetId() == victim.GetId() && tk.GetStatus().GetState() >= pb.TaskState_TASK_STATE_COMPLETE {
				oldFailed = true
			}
			if tk.GetId() != victim.GetId() && tk.GetSlot() == victim.GetSlot() && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
				replaced = true
			}
		}
		return replaced && oldFailed
	}, "the killed task %s ended and a new task runs in slot %d", victim.GetId(), victim.GetSlot())
	runningOn(t, c, "web", 3)

	// A published port answers on every agent, from the container.
	if _, err := c.CLI(ctx, "service", "create", "--name", "app", "--mode", "global", "--constraint", "node.role==worker",
		"--publish", "mode=host,published=8080,target=8080", c.Images.AppV1.Tag); err != nil {
		t.Fatal(err)
	}
	for _, a := range c.Agents {
		url := fmt.Sprintf("http://%s:8080/", a.Host.Addr)
		var body string
		await.True(t, wait, func() bool {
			body, err = e2ecluster.Get(ctx, url)
			return err == nil
		}, "GET %s answers", url)
		if !strings.Contains(body, "v1") {
			t.Errorf("GET %s = %q, want the app's answer with its version v1", url, body)
		}
	}

	// Nothing meets the constraint: the task stays pending with a reason.
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "nowhere", "--constraint", "node.labels.zone==mars", bb, "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool {
		out, err := c.CLI(ctx, "service", "ps", "nowhere")
		return err == nil && strings.Contains(out, "no suitable node") && strings.Contains(out, "constraint")
	}, "service ps nowhere shows why no node suits it")
	if err := ctx.Err(); err != nil && err != context.Canceled {
		t.Fatal(err)
	}
}
