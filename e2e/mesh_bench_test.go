package e2e

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// BenchmarkVIPAfterStart: seconds from a task becoming RUNNING on one
// agent until the VIP table of a container on the other agent holds it
// (from then on the VIP sends it connections). Aim: under 1 s.
func BenchmarkVIPAfterStart(b *testing.B) {
	const trials = 5
	c := benchUp(b, 1, 2)
	ctx := b.Context()
	a1, a2 := c.Agents[0], c.Agents[1]
	b.Logf(noise)
	if out, err := c.CLI(ctx, "service", "create", "--name", "web", "--constraint", "node.hostname=="+a1.Name, c.Images.AppV1.Tag); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	if out, err := c.CLI(ctx, "service", "create", "--name", "watcher", "--constraint", "node.hostname=="+a2.Name,
		c.Images.Busybox.Tag, "sleep", "3600"); err != nil {
		b.Fatalf("%v\n%s", err, out)
	}
	watcher := containerPid(b, c, "watcher")
	var ds []time.Duration
	for b.Loop() {
		ds = ds[:0]
		for i := range trials {
			seen := taskIDs(b, c, "web")
			if out, err := c.CLI(ctx, "service", "scale", "--detach", fmt.Sprintf("web=%d", i+2)); err != nil {
				b.Fatalf("%v\n%s", err, out)
			}
			var fresh *pb.Task
			await.True(b, wait, func() bool {
				fresh = newRunning(b, c, "web", seen)
				return fresh != nil
			}, "a new task of web runs")
			addr := firstAddr(fresh)
			await.True(b, wait, func() bool { return slices.Contains(vipBackends(b, watcher), addr) }, "a2's watcher reaches %s by the VIP", addr)
			ds = append(ds, time.Since(fresh.GetStatus().GetTimestamp().AsTime()))
		}
	}
	report(b, "running-to-vip", ds, time.Second, "s")
}

// taskIDs lists the IDs of svc's tasks.
func taskIDs(b *testing.B, c *e2ecluster.Cluster, svc string) map[string]bool {
	tasks, err := c.Tasks(b.Context(), svc)
	if err != nil {
		b.Fatal(err)
	}
	ids := map[string]bool{}
	for _, t := range tasks {
		ids[t.GetId()] = true
	}
	return ids
}

// newRunning is a running task of svc not in seen, or nil.
func newRunning(b *testing.B, c *e2ecluster.Cluster, svc string, seen map[string]bool) *pb.Task {
	tasks, err := c.Tasks(b.Context(), svc)
	if err != nil {
		return nil
	}
	for _, t := range tasks {
		if !seen[t.GetId()] && t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			return t
		}
	}
	return nil
}

func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	return s[len(s)/2]
}

// loadAvg is the machine's one-minute load average.
func loadAvg(b *testing.B) float64 {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		b.Fatal(err)
	}
	var l float64
	if _, err := fmt.Sscan(string(raw), &l); err != nil {
		b.Fatalf("/proc/loadavg %q: %v", raw, err)
	}
	return l
}
