package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// cliVia runs the CLI against the manager at addr with the client bundle
// of manager m (every manager's bundle is of the one cluster CA).
func cliVia(ctx context.Context, m *e2ecluster.Node, addr string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bins.CLI, args...)
	cmd.Env = append(os.Environ(), "BERTH_TLS_DIR="+filepath.Join(m.DataDir, "client"), "BERTH_HOST="+addr)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("berth %s via %s: %w: %s", strings.Join(args, " "), addr, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// raftMembers lists the managers `berth cluster info` shows.
func raftMembers(ctx context.Context, c *e2ecluster.Cluster) ([]*pb.RaftMember, error) {
	out, err := c.CLI(ctx, "cluster", "info", "--format", "json")
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(out), &raw); err != nil || len(raw) != 1 {
		return nil, fmt.Errorf("cluster info: not a JSON list of one: %v: %s", err, out)
	}
	var r pb.GetClusterResponse
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(raw[0], &r); err != nil {
		return nil, err
	}
	return r.GetMembers(), nil
}

// wantManagers waits until the cluster lists n managers, all reachable,
// and node name has the role want.
func wantManagers(t *testing.T, c *e2ecluster.Cluster, name, role string, n int) {
	t.Helper()
	await.NoError(t, wait, func() error {
		members, err := raftMembers(t.Context(), c)
		if err != nil {
			return err
		}
		if len(members) != n {
			return fmt.Errorf("cluster info lists %d managers, want %d", len(members), n)
		}
		nd, err := c.NodeByName(t.Context(), name)
		if err != nil {
			return err
		}
		if nd.Role != role || nd.Status != "ready" {
			return fmt.Errorf("node %s is a %s %s node", name, nd.Status, nd.Role)
		}
		ms := nd.Node.GetManagerStatus()
		if role == "manager" && ms.GetReachability() != pb.ManagerStatus_REACHABILITY_REACHABLE {
			return fmt.Errorf("node %s manager status %v", name, ms)
		}
		if role == "worker" && ms != nil {
			return fmt.Errorf("worker %s has manager status %v", name, ms)
		}
		return nil
	}, "%d managers; %s is a ready %s", n, name, role)
}

// TestPromoteAgentInPlace: `berth node promote` turns a worker's
// berth-agent into a manager too (Swarm's way): it joins Raft, serves the
// CLI and takes writes, survives a restart of its agent, and `berth node
// demote` makes it a worker again; its tasks run on throughout.
func TestPromoteAgentInPlace(t *testing.T) {
	c := up(t, 1, 2, nil)
	ctx := t.Context()
	bb := c.Images.Busybox.Tag
	a1, m1 := c.Agents[0], c.Managers[0]
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "sleepers", "--replicas", "2", bb, "sleep", "3600"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "sleepers", 2)
	n1, err := c.NodeByName(ctx, a1.Name)
	if err != nil {
		t.Fatal(err)
	}
	onA1 := tasksRunningOn(t, c, "sleepers", n1.ID)
	if len(onA1) == 0 {
		t.Fatalf("no sleepers task runs on %s", a1.Name)
	}

	out, err := c.CLI(ctx, "node", "promote", n1.ID)
	if c.Etcd != nil {
		// Agents are not given etcd's endpoints and certificates: on etcd
		// a promotion is refused, saying how to add a manager instead.
		if err == nil || !strings.Contains(err.Error(), "state in etcd") || !strings.Contains(err.Error(), "berth-manager --store etcd") {
			t.Fatalf("promote %s on etcd: %v, %q; want a refusal saying how to add a manager", a1.Name, err, out)
		}
		return
	}
	if err != nil {
		t.Fatalf("promote %s: %v", a1.Name, err)
	}
	if !strings.Contains(out, "promoted") {
		t.Errorf("node promote printed %q", out)
	}
	wantManagers(t, c, a1.Name, "manager", 2)

	// a1's manager serves the CLI (with m1's bundle: one CA) and takes writes.
	if _, err := cliVia(ctx, m1, a1.Addr(), "service", "create", "--detach", "--name", "via-a1", bb, "sleep", "3600"); err != nil {
		t.Fatalf("write through a1's manager: %v", err)
	}
	runningOn(t, c, "via-a1", 1)

	// Restarted with only its usual flags, the agent runs its manager again.
	if err := c.Restart(ctx, a1); err != nil {
		t.Fatal(err)
	}
	await.NoError(t, wait, func() error {
		_, err := cliVia(ctx, m1, a1.Addr(), "service", "ls")
		return err
	}, "a1's manager serves again after its agent restarted")
	wantManagers(t, c, a1.Name, "manager", 2)

	out, err = c.CLI(ctx, "node", "demote", n1.ID)
	if err != nil {
		t.Fatalf("demote %s: %v", a1.Name, err)
	}
	wantManagers(t, c, a1.Name, "worker", 1)
	await.NoError(t, wait, func() error {
		if _, err := os.Stat(filepath.Join(a1.DataDir, "manager")); !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("a1's manager data is still there (%v)", err)
		}
		if _, err := cliVia(ctx, m1, a1.Addr(), "service", "ls"); err == nil {
			return errors.New("a1 still serves the manager API")
		}
		return nil
	}, "the demoted agent stops its manager and removes its data")

	// The agent ran its tasks throughout: the same ones still run.
	runningOn(t, c, "sleepers", 2)
	still := tasksRunningOn(t, c, "sleepers", n1.ID)
	for id := range onA1 {
		if !still[id] {
			t.Errorf("task %s no longer runs on %s after promote and demote (now %v)", id, a1.Name, still)
		}
	}
	// And the cluster, one manager again, still takes writes.
	if _, err := c.CLI(ctx, "service", "scale", "via-a1=2"); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "via-a1", 2)
}

// tasksRunningOn lists the IDs of svc's tasks running on node.
func tasksRunningOn(t *testing.T, c *e2ecluster.Cluster, svc, node string) map[string]bool {
	t.Helper()
	tasks, err := c.Tasks(t.Context(), svc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, tk := range tasks {
		if tk.GetNodeId() == node && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			out[tk.GetId()] = true
		}
	}
	return out
}
