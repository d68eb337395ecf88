package e2e

import (
	"fmt"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// BenchmarkNameResolvesAcrossHosts: how long after a task starts on one
// node its name resolves in a container on another node (the time from
// its agent's report that it runs, and from `service create`), over 5
// trials, a new service each time.
func BenchmarkNameResolvesAcrossHosts(b *testing.B) {
	c := benchUp(b, 1, 2)
	ctx := b.Context()
	if _, err := c.CLI(ctx, "network", "create", "back"); err != nil {
		b.Fatal(err)
	}
	a1, a2 := c.Agents[0].Name, c.Agents[1].Name
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "probe", "--network", "back",
		"--constraint", "node.hostname=="+a2, c.Images.Busybox.Tag, "sleep", "3600"); err != nil {
		b.Fatal(err)
	}
	probe := runningTask(b, c, "probe")
	gw := nameserver(b, probe)
	var fromStart, fromCreate []time.Duration
	for b.Loop() {
		fromStart, fromCreate = fromStart[:0], fromCreate[:0]
		for i := range 5 {
			name := fmt.Sprintf("svc%d", i)
			created := time.Now()
			if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", name, "--network", "back",
				"--constraint", "node.hostname=="+a1, c.Images.Busybox.Tag, "sleep", "3600"); err != nil {
				b.Fatal(err)
			}
			resolved := waitAnswer(b, probe, gw, "tasks."+name+".", func(a []string) bool { return len(a) == 1 })
			started := runningTask(b, c, name).GetStatus().GetTimestamp().AsTime()
			fromStart = append(fromStart, resolved.Sub(started))
			fromCreate = append(fromCreate, resolved.Sub(created))
			if _, err := c.CLI(ctx, "service", "rm", name); err != nil {
				b.Fatal(err)
			}
		}
	}
	report(b, "resolves-after-start", fromStart, time.Millisecond, "ms")
	report(b, "resolves-after-create", fromCreate, time.Millisecond, "ms")
	b.Logf(noise)
}

// runningTask waits until svc has a running task and returns it.
func runningTask(tb testing.TB, c *e2ecluster.Cluster, svc string) *pb.Task {
	tb.Helper()
	var got *pb.Task
	await.True(tb, wait, func() bool {
		tasks, err := c.Tasks(tb.Context(), svc)
		if err != nil {
			return false
		}
		for _, tk := range tasks {
			if tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING && tk.GetStatus().GetContainer().GetPid() != 0 {
				got = tk
				return true
			}
		}
		return false
	}, "%s has a running task", svc)
	return got
}
