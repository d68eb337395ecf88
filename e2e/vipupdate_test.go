package e2e

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// vipLoop is a busybox client that GETs http://VIP:8080/ in a loop until
// /tmp/stop exists, appending one line per request to /tmp/log: the
// version that answered, or "fail" with the time and what nc said.
const vipLoop = `while [ ! -e /tmp/stop ]; do
  out=$(printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %[1]s 8080 2>&1)
  if echo "$out" | grep -q '^HTTP/1.[01] 200'; then
    echo "$out" | grep -o '"version":"[^"]*"' >> /tmp/log
  else
    echo "fail $(date +%%T) $(echo "$out" | head -c 80 | tr '\n' ' ')" >> /tmp/log
  fi
done; touch /tmp/stopped; sleep 3600`

// TestVIPZeroDowntimeUpdate: a client container looping HTTP requests to
// a 10-replica service's VIP sees no failed request while the service
// rolls from v1 to v2 start-first, two slots at a time.
func TestVIPZeroDowntimeUpdate(t *testing.T) {
	c := up(t, 1, 3, nil)
	ctx := t.Context()
	r := &rollout{t: t, c: c, via: c.Managers[0], name: "web", replicas: 10}
	if _, err := c.CLI(ctx, "network", "create", "back"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.cli(ctx, "service", "create", "--detach", "--name", "web", "--replicas", "10", "--network", "back",
		"--update-order", "start-first", "--update-parallelism", "2", "--update-delay", "500ms", "--update-monitor", "1s",
		c.Images.AppV1.Tag); err != nil {
		t.Fatal(err)
	}
	r.awaitAll("v1")
	vip := serviceVIP(t, c, "web")
	a3 := c.Agents[2].Name
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "loop", "--network", "back",
		"--constraint", "node.hostname=="+a3, c.Images.Busybox.Tag, "sh", "-c", fmt.Sprintf(vipLoop, vip)); err != nil {
		t.Fatal(err)
	}
	runningOn(t, c, "loop", 1)
	loop := containerPid(t, c, "loop")
	self := taskAddr(t, c, "loop") // the loop service's own VIP leads to it
	webBackends := func() []string {
		b := slices.DeleteFunc(vipBackends(t, loop), func(a string) bool { return a == self })
		slices.Sort(b)
		return b
	}
	v1 := addrsOfTasks(liveTasks(t, c, "web"))
	var backends []string
	await.True(t, wait, func() bool { backends = webBackends(); return slices.Equal(backends, v1) },
		"the client's VIP map %v has all 10 replicas %v", &backends, v1)
	before := awaitRequests(t, c, 20)

	started := time.Now()
	out, err := r.cli(ctx, "service", "update", "--image", c.Images.AppV2.Tag, "web")
	if err != nil || !strings.Contains(out, "verify: Service converged") {
		t.Fatalf("start-first update to v2: %v\n%s", err, out)
	}
	took := time.Since(started)
	r.awaitAll("v2")
	if svc, err := r.service(ctx); err != nil || svc.GetUpdateStatus().GetState() != pb.UpdateStatus_STATE_COMPLETED {
		t.Fatalf("update status %v, %v; want completed", svc.GetUpdateStatus(), err)
	}
	// Requests go on until every old task has stopped, and a little after.
	v2 := addrsOfTasks(liveTasks(t, c, "web"))
	await.True(t, wait, func() bool { backends = webBackends(); return slices.Equal(backends, v2) },
		"the client's VIP map %v holds only the v2 tasks %v", &backends, v2)
	await.True(t, wait, func() bool {
		tasks, err := r.tasks(ctx)
		return err == nil && !slices.ContainsFunc(tasks, func(tk *pb.Task) bool {
			return version(tk) == "v1" && tk.GetStatus().GetState() <= pb.TaskState_TASK_STATE_RUNNING
		})
	}, "every v1 task has stopped")
	awaitRequests(t, c, loopCounts(t, c)["total"]+20)
	if _, err := c.CLI(ctx, "exec", "loop", "--", "touch", "/tmp/stop"); err != nil {
		t.Fatal(err)
	}
	await.NoError(t, wait, func() error { _, err := c.CLI(ctx, "exec", "loop", "--", "test", "-e", "/tmp/stopped"); return err },
		"the client loop stops")
	n := loopCounts(t, c)
	t.Logf("update took %s; requests through the VIP: %d before the update, %d in all: %v", took.Round(time.Millisecond), before, n["total"], n)
	if n["fail"] > 0 {
		failed, _ := c.CLI(ctx, "exec", "loop", "--", "grep", "^fail", "/tmp/log")
		t.Errorf("%d of %d requests through the VIP failed during a start-first update:\n%s", n["fail"], n["total"], failed)
	}
	if n["v1"] == 0 || n["v2"] == 0 || n["total"] < 100 {
		t.Errorf("requests answered %v; want both versions and at least 100 requests", n)
	}
}

// loopCounts tallies the loop client's log: requests per version, failures,
// and the total.
func loopCounts(t *testing.T, c *e2ecluster.Cluster) map[string]int {
	t.Helper()
	out, err := c.CLI(t.Context(), "exec", "loop", "--", "sh", "-c", "touch /tmp/log; cat /tmp/log")
	if err != nil {
		t.Fatalf("read the client's log: %v", err)
	}
	n := map[string]int{}
	for line := range strings.Lines(out) {
		switch {
		case strings.HasPrefix(line, "fail"):
			n["fail"]++
		case strings.HasPrefix(line, `"version":`):
			v, _ := strconv.Unquote(strings.TrimSpace(strings.TrimPrefix(line, `"version":`)))
			n[v]++
		default:
			continue
		}
		n["total"]++
	}
	return n
}

// awaitRequests waits until the loop client has made at least want
// requests, and returns how many it has.
func awaitRequests(t *testing.T, c *e2ecluster.Cluster, want int) int {
	t.Helper()
	var got int
	await.True(t, wait, func() bool { got = loopCounts(t, c)["total"]; return got >= want },
		"the client made %d requests (has %d)", want, &got)
	return got
}
