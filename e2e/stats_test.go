package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	"berth/internal/metrics/metricstest"
)

// metricsPort is where every node of the metrics cluster serves /metrics.
const metricsPort = 9323

// TestStatsAndMetricsAcrossNodes: `berth stats` merges the samples of
// tasks on two agents, taken from their cgroups by each agent; a task
// whose agent dies is shown as down while the others go on. Each agent's
// and the manager's /metrics, parsed with Prometheus' text parser, count
// what a user would expect: the running tasks, one container start and
// one image pull per agent; a promoted agent's endpoint adds its
// manager's figures.
func TestStatsAndMetricsAcrossNodes(t *testing.T) {
	c := upWith(t, e2ecluster.Options{Managers: 1, Agents: 2, MetricsPort: metricsPort})
	ctx := t.Context()
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "spin", "--replicas", "2", "--replicas-max-per-node", "1",
		c.Images.Busybox.Tag, "sh", "-c", "while :; do :; done"); err != nil {
		t.Fatal(err)
	}
	if byNode := runningOn(t, c, "spin", 2); len(byNode) != 2 {
		t.Fatalf("tasks on %d nodes, want 2: %v", len(byNode), byNode)
	}

	mgr := scrapeNode(t, c, c.Managers[0])
	if v, _ := mgr.Value("berth_tasks", "state", "running"); v != 2 {
		t.Errorf("manager: berth_tasks{state=running} = %v, want 2 (the service's replicas)", v)
	}
	await.True(t, wait, func() bool {
		v, _ := scrapeNode(t, c, c.Managers[0]).Value("berth_dispatcher_heartbeats_total")
		return v > 0
	}, "manager: no heartbeats counted")
	for _, a := range c.Agents {
		f := scrapeNode(t, c, a)
		starts, _ := f.Value("berth_agent_container_starts_total", "result", "ok")
		pulls, _ := f.Value("berth_agent_image_pulls_total", "result", "ok")
		if starts != 1 || pulls != 1 {
			t.Errorf("agent %s: %v container starts and %v image pulls counted, want 1 and 1 (its one task)", a.Name, starts, pulls)
		}
	}

	// Stats stream from both nodes; then one agent dies.
	var out syncBuffer
	sctx, stop := context.WithCancel(ctx)
	stream := cliCmd(sctx, c, "stats", "--format", "json", "spin")
	stream.Stdout, stream.Stderr = &out, &out
	if err := stream.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); _ = stream.Wait() }()
	busy := func(sample map[string]any) bool { v, _ := sample["cpu_percent"].(float64); return v > 0 }
	await.True(t, wait, func() bool {
		s := samples(out.String())
		return len(s["spin.1"]) > 1 && len(s["spin.2"]) > 1 && busy(last(s["spin.1"])) && busy(last(s["spin.2"]))
	}, "stats of both tasks, busy: %s", &out)

	victim := c.Agents[1]
	vnode, err := c.NodeByName(ctx, victim.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill9(victim); err != nil {
		t.Fatal(err)
	}
	var down, alive, msg string
	await.True(t, wait, func() bool {
		for name, ss := range samples(out.String()) {
			for _, x := range ss {
				if e, _ := x["error"].(string); e != "" && x["node_id"] == vnode.ID {
					down, msg = name, e
				}
			}
			if name != down && len(ss) > 0 {
				alive = name
			}
		}
		return down != "" && alive != "" && len(samples(out.String())[alive]) > 3
	}, "the task on %s (killed) shown as down while the other goes on: %s", victim.Name, &out)
	t.Logf("%s on the killed agent: %s", down, msg)
	if !strings.Contains(msg, "down") {
		t.Errorf("the error of a task whose node died does not say it is down: %q", msg)
	}

	// Promoted, the surviving agent's manager counts on the same endpoint:
	// among the nodes, the killed one down. On etcd no agent is promoted
	// (TestPromoteAgentInPlace shows the refusal): nothing more to see.
	if c.Etcd != nil {
		return
	}
	a1, err := c.NodeByName(ctx, c.Agents[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := c.CLI(ctx, "node", "promote", a1.ID); err != nil {
		t.Fatalf("promote %s: %v\n%s", c.Agents[0].Name, err, out)
	}
	var nodesDown, starts float64
	var scrapeErr error
	await.True(t, wait, func() bool {
		f, err := metricstest.Scrape(ctx, c.MetricsURL(c.Agents[0]))
		if scrapeErr = err; err != nil {
			return false
		}
		nodesDown, _ = f.Value("berth_nodes", "state", "down", "availability", "active")
		starts, _ = f.Value("berth_agent_container_starts_total", "result", "ok")
		return nodesDown == 1 && starts == 1
	}, "the promoted agent's /metrics: %v nodes down (want 1, the killed agent), %v container starts (want 1), scrape error %v", seen(func() any { return nodesDown }), seen(func() any { return starts }), seen(func() any { return scrapeErr }))
}

// scrapeNode parses n's /metrics.
func scrapeNode(t *testing.T, c *e2ecluster.Cluster, n *e2ecluster.Node) metricstest.Families {
	t.Helper()
	var f metricstest.Families
	await.NoError(t, 10*time.Second, func() (err error) {
		f, err = metricstest.Scrape(t.Context(), c.MetricsURL(n))
		return err
	}, "scrape %s", n.Name)
	return f
}

// samples are the JSON lines of `berth stats --format json`, by task name.
func samples(out string) map[string][]map[string]any {
	by := map[string][]map[string]any{}
	for _, l := range strings.Split(out, "\n") {
		var s map[string]any
		if json.Unmarshal([]byte(l), &s) == nil {
			name, _ := s["name"].(string)
			by[name] = append(by[name], s)
		}
	}
	return by
}

func last(ss []map[string]any) map[string]any {
	if len(ss) == 0 {
		return nil
	}
	return ss[len(ss)-1]
}

// seen formats a value when a failure message is printed, not before.
type seen func() any

func (s seen) String() string { return fmt.Sprint(s()) }
