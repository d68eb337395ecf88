package e2e

import (
	"fmt"
	"slices"
	"testing"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// TestUpdateFollowsNetworksAndPausedNodes, on real hosts with a global
// service of the test app on two agents: attaching a network rolls the
// tasks onto it (each new task has an address there); a node paused during
// an update keeps its old task running, and gets the new version at once
// when it is active again, outside the rolling update (Swarm's rule).
func TestUpdateFollowsNetworksAndPausedNodes(t *testing.T) {
	c := up(t, 1, 2, nil)
	ctx := t.Context()
	r := &rollout{t: t, c: c, via: c.Managers[0], name: "g"}
	if _, err := r.cli(ctx, "network", "create", "back"); err != nil {
		t.Fatal(err)
	}
	back := networkID(t, r, "back")
	if _, err := r.cli(ctx, "service", "create", "-d", "--name", "g", "--mode", "global",
		"--update-parallelism", "0", "--update-monitor", "1s", c.Images.AppV1.Tag); err != nil {
		t.Fatal(err)
	}
	a1, a2 := c.Agents[0].Name, c.Agents[1].Name
	first := awaitNodes(t, r, c, func(host string, tk *pb.Task) error { return running(tk, "v1") })

	if _, err := r.cli(ctx, "service", "update", "-d", "--network-add", "back", "g"); err != nil {
		t.Fatal(err)
	}
	onBack := awaitNodes(t, r, c, func(host string, tk *pb.Task) error {
		if tk.GetId() == first[host].GetId() {
			return fmt.Errorf("still runs the task made before the network was added")
		}
		if !slices.ContainsFunc(tk.GetNetworks(), func(a *pb.NetworkAttachmentStatus) bool {
			return a.GetNetworkId() == back && len(a.GetAddresses()) > 0
		}) {
			return fmt.Errorf("task %s has no address on back: %v", short(tk.GetId()), tk.GetNetworks())
		}
		return running(tk, "v1")
	})

	if _, err := r.cli(ctx, "node", "update", "--availability", "pause", a2); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cli(ctx, "service", "update", "-d", "--image", c.Images.AppV2.Tag, "g"); err != nil {
		t.Fatal(err)
	}
	awaitNodes(t, r, c, func(host string, tk *pb.Task) error {
		if host == a2 {
			if tk.GetId() != onBack[a2].GetId() {
				return fmt.Errorf("the paused node's task was replaced by %s", short(tk.GetId()))
			}
			return running(tk, "v1")
		}
		return running(tk, "v2")
	})
	var done *pb.UpdateStatus
	await.NoError(t, wait, func() error {
		svc, err := r.service(ctx)
		if done = svc.GetUpdateStatus(); err == nil && done.GetState() != pb.UpdateStatus_STATE_COMPLETED {
			err = fmt.Errorf("update status %v", done)
		}
		return err
	}, "the update completes without the paused node")

	if _, err := r.cli(ctx, "node", "update", "--availability", "active", a2); err != nil {
		t.Fatal(err)
	}
	awaitNodes(t, r, c, func(host string, tk *pb.Task) error { return running(tk, "v2") })
	svc, err := r.service(ctx)
	if st := svc.GetUpdateStatus(); err != nil || st.GetState() != pb.UpdateStatus_STATE_COMPLETED || !st.GetStartedAt().AsTime().Equal(done.GetStartedAt().AsTime()) {
		t.Errorf("status after the paused node caught up: %v, %v; want the finished update's, unchanged", st, err)
	}
	t.Logf("%s and %s run v2 on network back", a1, a2)
}

// awaitNodes waits until the service has exactly one live task on each
// agent and check passes for every one; it returns them by hostname.
func awaitNodes(t *testing.T, r *rollout, c *e2ecluster.Cluster, check func(host string, tk *pb.Task) error) map[string]*pb.Task {
	t.Helper()
	hosts := hostnames(t, c)
	var byHost map[string]*pb.Task
	await.NoError(t, wait, func() error {
		tasks, err := r.tasks(t.Context())
		if err != nil {
			return err
		}
		byHost = map[string]*pb.Task{}
		for _, tk := range tasks {
			if tk.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING {
				continue
			}
			h := hosts[tk.GetNodeId()]
			if byHost[h] != nil {
				return fmt.Errorf("two live tasks on %s", h)
			}
			byHost[h] = tk
		}
		for _, a := range c.Agents {
			tk := byHost[a.Name]
			if tk == nil {
				return fmt.Errorf("no live task on %s", a.Name)
			}
			if err := check(a.Name, tk); err != nil {
				return fmt.Errorf("%s: %w", a.Name, err)
			}
		}
		return nil
	}, "a live task on each agent")
	return byHost
}

// running checks that a task runs version v of the test app.
func running(tk *pb.Task, v string) error {
	if got := version(tk); got != v || tk.GetStatus().GetState() != pb.TaskState_TASK_STATE_RUNNING {
		return fmt.Errorf("task %s runs %s, %v; want %s, running", short(tk.GetId()), got, tk.GetStatus().GetState(), v)
	}
	return nil
}

// networkID reads a network's ID through the CLI.
func networkID(t *testing.T, r *rollout, name string) string {
	t.Helper()
	out, err := r.cli(t.Context(), "network", "ls", "-q", "--filter", "name="+name)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 2 {
		t.Fatalf("network ls -q --filter name=%s: %q", name, out)
	}
	return out[:len(out)-1]
}
