package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestHealthOnRealHosts: the agent probes the test app's /health over
// HTTP from outside the container (the image has no shell or curl); a
// task whose health fails is replaced and says why in `service ps`; an
// update whose new tasks never turn healthy pauses after the first node.
func TestHealthOnRealHosts(t *testing.T) {
	c := up(t, 1, 2, nil)
	ctx := t.Context()
	r := &rollout{t: t, c: c, via: c.Managers[0], name: "hc", replicas: 2}
	if _, err := r.cli(ctx, "service", "create", "--name", "hc", "--mode", "global", "--constraint", "node.role==worker",
		"--publish", "mode=host,published=8080,target=8080", "--health-http", "8080/health", "--health-interval", "300ms",
		"--health-retries", "2", "--restart-delay", "500ms", "--update-parallelism", "1", c.Images.AppV1.Tag); err != nil {
		t.Fatal(err)
	}
	healthy := func() map[string]*pb.Task {
		byNode := map[string]*pb.Task{}
		await.True(t, wait, func() bool {
			tasks, err := r.tasks(ctx)
			if err != nil {
				return false
			}
			clear(byNode)
			for _, tk := range tasks {
				if tk.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING &&
					tk.GetStatus().GetContainer().GetHealth() == pb.ContainerStatus_HEALTH_HEALTHY {
					byNode[tk.GetNodeId()] = tk
				}
			}
			return len(byNode) == 2
		}, "a healthy task on each agent")
		return byNode
	}
	before := healthy()
	ps, _ := r.cli(ctx, "service", "ps", "hc")
	if strings.Count(ps, "(healthy)") != 2 {
		t.Errorf("service ps shows no health:\n%s", ps)
	}

	// The app on the first agent turns unhealthy: its task fails with the
	// probe's answer and a new one takes its place.
	a := c.Agents[0]
	if err := post(ctx, fmt.Sprintf("http://%s:8080/health/fail", a.Host.Addr)); err != nil {
		t.Fatal(err)
	}
	var failed *pb.Task
	await.True(t, wait, func() bool {
		tasks, _ := r.tasks(ctx)
		for _, tk := range tasks {
			if tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_FAILED && strings.Contains(tk.GetStatus().GetErr(), "unhealthy container: GET http://127.0.0.1:8080/health: 503") {
				failed = tk
			}
		}
		return failed != nil
	}, "a task failed as unhealthy, with the probe's answer")
	after := healthy()
	if after[failed.GetNodeId()].GetId() == before[failed.GetNodeId()].GetId() {
		t.Errorf("the unhealthy task was not replaced")
	}
	ps, _ = r.cli(ctx, "service", "ps", "hc")
	if !strings.Contains(ps, "unhealthy container: GET http://127.0.0.1:8080/health: 503") {
		t.Errorf("service ps does not say why the task failed:\n%s", ps)
	}

	// An update whose tasks never turn healthy (the probe gets 404) stops
	// after the first node: an unhealthy task is no running task.
	since := time.Now()
	out, err := r.cli(ctx, "service", "update", "--health-http", "8080/nope", "hc")
	if err == nil || !strings.Contains(err.Error(), "update paused due to failure or early termination of task") || !strings.Contains(err.Error(), "404") {
		t.Fatalf("update to a spec that never turns healthy: %v\n%s", err, out)
	}
	tasks, _ := r.tasks(ctx)
	nodes := map[string]bool{}
	for _, tk := range tasks {
		if tk.GetMeta().GetCreatedAt().AsTime().After(since) && tk.GetSpec().GetContainer().GetHealthcheck().GetHttpPath() == "/nope" {
			nodes[tk.GetNodeId()] = true
		}
	}
	if len(nodes) != 1 {
		t.Errorf("the unhealthy spec reached %d nodes, want only the first (parallelism 1)", len(nodes))
	}
	t.Logf("paused: %v", err)
}

func post(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("POST %s: %s", url, resp.Status)
	}
	return nil
}
