package e2e

import (
	"fmt"
	"testing"
	"time"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// BenchmarkRollingUpdate50: a rolling update of 50 busybox replicas on
// three agents, parallelism 10, delay 0, monitor 0, stop-first and
// start-first: from `service update --detach` to every slot running the
// new spec and the update status completed. Per batch is that time over
// the 5 batches (no configured waits to take off). Docker Swarm took
// 19.7 s for the same update here; the aim is under 2 s.
func BenchmarkRollingUpdate50(b *testing.B) {
	const replicas, trials = 50, 3
	c := benchUp(b, 1, 3)
	b.Logf(noise)
	s := createService(b, c, "rolling", replicas)
	s.waitRunning(b, replicas)
	seq := 0
	for _, order := range []string{"stop-first", "start-first"} {
		b.Run(order, func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				took = took[:0]
				for range trials {
					seq++
					env := fmt.Sprintf("TRIAL=%d", seq)
					start := time.Now()
					if _, err := c.CLI(b.Context(), "service", "update", "--detach", "--env-add", env, "--update-parallelism", "10",
						"--update-delay", "0s", "--update-monitor", "0s", "--update-order", order, "rolling"); err != nil {
						b.Fatal(err)
					}
					last := awaitRolled(b, s, replicas, env)
					took = append(took, time.Since(start))
					b.Logf("%s trial %d: 50 replicas rolled in %v (the last new task reported running at +%v)",
						order, seq, took[len(took)-1].Round(time.Millisecond), last.Sub(start).Round(time.Millisecond))
				}
			}
			report(b, "update50", took, time.Second, "s")
			perBatch := make([]time.Duration, len(took))
			for i, d := range took {
				perBatch[i] = d / 5
			}
			report(b, "batch", perBatch, time.Millisecond, "ms")
		})
	}
}

// awaitRolled waits until every slot of s runs a task with env and the
// service's update status is completed; it returns when the last of those
// tasks reported running (the agents' clock, this machine's).
func awaitRolled(b *testing.B, s service, replicas int, env string) time.Time {
	b.Helper()
	var last time.Time
	await.True(b, wait, func() bool {
		tasks, err := s.c.Tasks(b.Context(), s.name)
		if err != nil {
			return false
		}
		n := 0
		last = time.Time{}
		for _, t := range tasks {
			if t.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING && t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING &&
				hasEnv(t, env) {
				n++
				last = later(last, t.GetStatus().GetTimestamp().AsTime())
			}
		}
		if n != replicas {
			return false
		}
		svc, err := inspectService(b.Context(), s.c.CLI, s.name)
		return err == nil && svc.GetUpdateStatus().GetState() == pb.UpdateStatus_STATE_COMPLETED
	}, "%s: %d tasks running with %s, update completed", s.name, replicas, env)
	return last
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func hasEnv(t *pb.Task, env string) bool {
	for _, e := range t.GetSpec().GetContainer().GetEnv() {
		if e == env {
			return true
		}
	}
	return false
}
