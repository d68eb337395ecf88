package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// syncBuffer is a bytes.Buffer a running command writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// cliCmd is the CLI command against the first manager, not started.
func cliCmd(ctx context.Context, c *e2ecluster.Cluster, args ...string) *exec.Cmd {
	m := c.Managers[0]
	cmd := exec.CommandContext(ctx, bins.CLI, args...)
	cmd.Env = append(os.Environ(), "BERTH_TLS_DIR="+filepath.Join(m.DataDir, "client"), "BERTH_HOST="+m.Addr())
	return cmd
}

// cliOut runs the CLI and returns its stdout and stderr.
func cliOut(ctx context.Context, c *e2ecluster.Cluster, args ...string) (string, string, error) {
	cmd := cliCmd(ctx, c, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	return out.String(), errb.String(), err
}

// liveTasks are a service's tasks meant to run, by slot.
func liveTasks(t *testing.T, c *e2ecluster.Cluster, svc string) map[uint64]*pb.Task {
	t.Helper()
	tasks, err := c.Tasks(t.Context(), svc)
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]*pb.Task{}
	for _, tk := range tasks {
		if tk.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING && tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			out[tk.GetSlot()] = tk
		}
	}
	return out
}

// hostnames maps node IDs to hostnames.
func hostnames(t *testing.T, c *e2ecluster.Cluster) map[string]string {
	t.Helper()
	nodes, err := c.Nodes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, n := range nodes {
		out[n.ID] = n.Hostname
	}
	return out
}

// firstLines are the first n lines of out that start with prefix.
func firstLines(out, prefix string, n int) string {
	var got []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) && len(got) < n {
			got = append(got, l)
		}
	}
	return strings.Join(got, "\n")
}

func short(id string) string { return id[:min(12, len(id))] }

// TestOperatingOnRealHosts: the logs of a service's tasks on three
// agents, merged and followed across a replacement task, and a node that
// is down said to be so.
func TestOperatingOnRealHosts(t *testing.T) {
	c := up(t, 1, 3, nil)
	ctx := t.Context()
	const lines = 20000
	script := fmt.Sprintf(`echo hello from $(hostname); echo oops >&2; seq 1 %d; exec sleep 3600`, lines)
	if _, err := c.CLI(ctx, "service", "create", "--detach", "--name", "talk", "--replicas", "3", "--replicas-max-per-node", "1",
		"--log-opt", "max-size=512k", "--log-opt", "max-file=3", c.Images.Busybox.Tag, "sh", "-c", script); err != nil {
		t.Fatal(err)
	}
	byNode := runningOn(t, c, "talk", 3)
	if len(byNode) != 3 {
		t.Fatalf("tasks on %d nodes, want 3: %v", len(byNode), byNode)
	}
	t.Run("logs", func(t *testing.T) { testLogs(t, c, lines) })
	t.Run("exec", func(t *testing.T) { testExec(t, c) })
	t.Run("events", func(t *testing.T) { testEvents(t, c) })

	// Removing the service removes its tasks' containers, logs included.
	if _, err := c.CLI(ctx, "service", "rm", "talk"); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool { return len(logFiles(c)) == 0 }, "log files left after service rm: %v", logFiles(c))
}

// logFiles lists the task log files on every agent.
func logFiles(c *e2ecluster.Cluster) []string {
	var files []string
	for _, a := range c.Agents {
		got, _ := filepath.Glob(filepath.Join(a.DataDir, "runtime", "containers", "*", "container.log*"))
		files = append(files, got...)
	}
	return files
}

func testLogs(t *testing.T, c *e2ecluster.Cluster, lines int) {
	ctx := t.Context()
	hosts := hostnames(t, c)
	tasks := liveTasks(t, c, "talk")
	prefix := func(tk *pb.Task) string {
		return fmt.Sprintf("talk.%d.%s@%s | ", tk.GetSlot(), short(tk.GetId()), hosts[tk.GetNodeId()])
	}
	// Every task has written all its lines before the whole log is read.
	await.True(t, wait, func() bool {
		out, _, err := cliOut(ctx, c, "service", "logs", "--tail", "2", "talk")
		return err == nil && strings.Count(out, fmt.Sprintf(" | %d\n", lines)) == 3
	}, "each task's last lines include %d", lines)

	start := time.Now()
	out, errOut, err := cliOut(ctx, c, "service", "logs", "talk")
	took := time.Since(start)
	if err != nil {
		t.Fatalf("service logs: %v: %s", err, errOut)
	}
	got := strings.Count(out, "\n")
	t.Logf("service logs: %d lines from 3 nodes in %v (%.0f lines/s through the manager)", got, took.Round(time.Millisecond), float64(got)/took.Seconds())
	if want := 3 * (lines + 2); got != want {
		t.Errorf("service logs printed %d lines, want %d", got, want)
	}
	for _, tk := range tasks {
		p := prefix(tk)
		host := hosts[tk.GetNodeId()]
		for _, want := range []string{p + "hello from " + short(tk.GetId()) + "\n", p + "oops\n", fmt.Sprintf("%s%d\n", p, lines)} {
			if !strings.Contains(out, want) {
				t.Errorf("no line %q of task %s on %s; its lines start with:\n%s", want, tk.GetId(), host, firstLines(out, p, 5))
			}
		}
	}

	// --tail, --timestamps, --no-task-ids, and one task.
	out, _, err = cliOut(ctx, c, "service", "logs", "--tail", "1", "--timestamps", "--no-task-ids", "talk")
	if err != nil || strings.Count(out, "\n") != 3 || !strings.Contains(out, fmt.Sprintf("talk.1@%s | %d-", hosts[tasks[1].GetNodeId()], time.Now().UTC().Year())) {
		t.Errorf("logs --tail 1 --timestamps --no-task-ids: %v\n%s", err, out)
	}
	out, _, err = cliOut(ctx, c, "service", "logs", "--tail", "2", short(tasks[2].GetId()))
	if err != nil || out != prefix(tasks[2])+fmt.Sprintf("%d\n", lines-1)+prefix(tasks[2])+fmt.Sprintf("%d\n", lines) {
		t.Errorf("logs of one task: %v\n%q", err, out)
	}
	checkRotation(t, c, tasks)

	// Follow: a task killed is replaced, and its replacement's lines come.
	var followed syncBuffer
	fctx, stop := context.WithCancel(ctx)
	follow := cliCmd(fctx, c, "service", "logs", "-f", "--tail", "1", "talk")
	follow.Stdout, follow.Stderr = &followed, &followed
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); _ = follow.Wait() }()
	await.True(t, wait, func() bool { return strings.Count(followed.String(), "\n") >= 3 }, "follow prints the 3 last lines: %q", &followed)
	victim := tasks[1]
	if err := syscall.Kill(int(victim.GetStatus().GetContainer().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatalf("kill task %s: %v", victim.GetId(), err)
	}
	var repl *pb.Task
	await.True(t, wait, func() bool {
		repl = liveTasks(t, c, "talk")[1]
		return repl != nil && repl.GetId() != victim.GetId()
	}, "slot 1 runs a new task")
	followedAt := time.Now()
	await.True(t, wait, func() bool { return strings.Contains(followed.String(), prefix(repl)+"hello from") },
		"the followed logs show the replacement %s: %q", repl.GetId(), &followed)
	t.Logf("follow: the replacement task's first line arrived %v after it was seen running", time.Since(followedAt).Round(time.Millisecond))
	stop()

	// A node killed: the logs of its task say that its node is down.
	dead := c.Agents[2]
	deadNode, err := c.NodeByName(ctx, dead.Name)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Kill9(dead); err != nil {
		t.Fatal(err)
	}
	nodeStatus(t, c, dead.Name, "down")
	lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, errOut, err = cliOut(lctx, c, "service", "logs", "--tail", "1", "talk")
	if err != nil || !strings.Contains(errOut, "@"+deadNode.Hostname+": node "+deadNode.ID+" has no session") {
		t.Errorf("logs with a node down: %v\nstdout %s\nstderr %s", err, out, errOut)
	}
	if err := c.Restart(ctx, dead); err != nil {
		t.Fatal(err)
	}
	nodeStatus(t, c, dead.Name, "ready")
}

// checkRotation: --log-opt bounds each task's files on its node; removing
// the service removes them.
func checkRotation(t *testing.T, c *e2ecluster.Cluster, tasks map[uint64]*pb.Task) {
	t.Helper()
	files := logFiles(c)
	perTask := map[string]int{}
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 512<<10 {
			t.Errorf("%s is %d bytes, over --log-opt max-size=512k", f, fi.Size())
		}
		perTask[filepath.Base(filepath.Dir(f))]++
	}
	for _, tk := range tasks {
		if n := perTask[tk.GetId()]; n < 2 || n > 3 {
			t.Errorf("task %s keeps %d log files, want 2 or 3 (rotated at 512k, --log-opt max-file=3): %v", tk.GetId(), n, files)
		}
	}
}

// exitStatus is a finished command's exit code (-1 when it did not run).
func exitStatus(err error) int {
	var ee *exec.ExitError
	if err == nil {
		return 0
	}
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// testExec: a command runs in a task's container on its node, through the
// manager, with its exit code; a task not running is refused; an
// interactive terminal session works and follows the terminal's size.
func testExec(t *testing.T, c *e2ecluster.Cluster) {
	ctx := t.Context()
	var task *pb.Task
	await.True(t, wait, func() bool { task = liveTasks(t, c, "talk")[2]; return task != nil }, "slot 2 runs")
	out, errOut, err := cliOut(ctx, c, "exec", short(task.GetId()), "--", "hostname")
	if err != nil || out != short(task.GetId())+"\n" {
		t.Fatalf("exec hostname in %s: %v %q %q, want the container's hostname", task.GetId(), err, out, errOut)
	}
	_, _, err = cliOut(ctx, c, "exec", "talk", "--", "sh", "-c", "echo to-stderr >&2; exit 3")
	if exitStatus(err) != 3 {
		t.Errorf("exec exit 3: %v", err)
	}
	cmd := cliCmd(ctx, c, "exec", "-i", task.GetId(), "--", "sh", "-c", "tr a-z A-Z; ls /nonexistent")
	cmd.Stdin = strings.NewReader("shout\n")
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err = cmd.Run()
	if exitStatus(err) != 1 || so.String() != "SHOUT\n" || !strings.Contains(se.String(), "nonexistent") {
		t.Errorf("exec -i: exit %d stdout %q stderr %q", exitStatus(err), so.String(), se.String())
	}
	_, errOut, err = cliOut(ctx, c, "exec", task.GetId(), "--", "nosuchcommand")
	if exitStatus(err) != 127 || !strings.Contains(errOut, "not found") {
		t.Errorf("exec of a missing command: exit %d, %q; want 127", exitStatus(err), errOut)
	}

	// Refused for a task that is not running, with its state.
	tasks, err := c.Tasks(ctx, "talk")
	if err != nil {
		t.Fatal(err)
	}
	for _, tk := range tasks {
		if tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_FAILED {
			_, errOut, err := cliOut(ctx, c, "exec", tk.GetId(), "--", "true")
			if exitStatus(err) != 1 || !strings.Contains(errOut, "is not running: it is failed") {
				t.Errorf("exec in failed task %s: exit %d %q", tk.GetId(), exitStatus(err), errOut)
			}
			break
		}
	}

	// Round trips: a CLI process each, TLS, manager, agent, container.
	var total time.Duration
	const runs = 10
	for range runs {
		start := time.Now()
		if _, errOut, err := cliOut(ctx, c, "exec", task.GetId(), "--", "true"); err != nil {
			t.Fatalf("exec true: %v: %s", err, errOut)
		}
		total += time.Since(start)
	}
	t.Logf("exec round trip (berth exec TASK -- true, CLI start included): %v on average over %d", (total / runs).Round(time.Millisecond), runs)

	testExecTTY(t, c, task)
}

// testExecTTY drives `berth exec -it` from a pseudo-terminal as a person
// would: commands typed, the terminal resized, the exit code returned.
func testExecTTY(t *testing.T, c *e2ecluster.Cluster, task *pb.Task) {
	cmd := cliCmd(t.Context(), c, "exec", "-it", task.GetId(), "--", "sh")
	term, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 90})
	if err != nil {
		t.Fatal(err)
	}
	defer term.Close()
	var screen syncBuffer
	go func() { _, _ = io.Copy(&screen, term) }()
	type_ := func(s string) {
		if _, err := term.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	type_("stty size; hostname\r")
	await.True(t, wait, func() bool { return strings.Contains(screen.String(), "30 90\r\n"+short(task.GetId())) },
		"the terminal session shows its size and hostname: %q", &screen)
	if err := pty.Setsize(term, &pty.Winsize{Rows: 40, Cols: 100}); err != nil {
		t.Fatal(err)
	}
	await.True(t, wait, func() bool {
		type_("stty size\r")
		time.Sleep(100 * time.Millisecond) // the resize travels as the command does
		return strings.Contains(screen.String(), "40 100")
	}, "the resized terminal is 40x100: %q", &screen)
	type_("exit 5\r")
	if err := cmd.Wait(); exitStatus(err) != 5 {
		t.Fatalf("exec -it ended with %v, want exit code 5; screen %q", err, screen.String())
	}
}

// testEvents: a task killed shows as failed, with its error, and its
// replacement as created and running; live and from the history.
func testEvents(t *testing.T, c *e2ecluster.Cluster) {
	ctx := t.Context()
	since := time.Now()
	var live syncBuffer
	fctx, stop := context.WithCancel(ctx)
	follow := cliCmd(fctx, c, "events", "--filter", "name=talk", "--filter", "type=task", "--format", "json")
	follow.Stdout, follow.Stderr = &live, &live
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stop(); _ = follow.Wait() }()
	var victim *pb.Task
	await.True(t, wait, func() bool { victim = liveTasks(t, c, "talk")[3]; return victim != nil }, "slot 3 runs")
	if err := syscall.Kill(int(victim.GetStatus().GetContainer().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatalf("kill task %s: %v", victim.GetId(), err)
	}
	var repl *pb.Task
	await.True(t, wait, func() bool {
		repl = liveTasks(t, c, "talk")[3]
		return repl != nil && repl.GetId() != victim.GetId()
	}, "slot 3 runs a new task")
	await.True(t, wait, func() bool {
		return hasEvent(live.String(), "failed", victim.GetId(), "talk.3") && hasEvent(live.String(), "running", repl.GetId(), "talk.3")
	},
		"berth events shows %s failed and %s running: %s", victim.GetId(), repl.GetId(), &live)
	if !strings.Contains(live.String(), `"error":`) {
		t.Errorf("the failure carries no error: %s", &live)
	}

	// The same from the history, as a client coming back would ask.
	out, errOut, err := cliOut(ctx, c, "events", "--since", since.Format(time.RFC3339Nano), "--until", time.Now().Add(time.Second).Format(time.RFC3339Nano),
		"--filter", "name=talk", "--filter", "event=failed", "--filter", "event=create", "--filter", "event=running")
	if err != nil {
		t.Fatalf("events --since --until: %v: %s", err, errOut)
	}
	want := []string{" task failed talk.3 (id=" + victim.GetId(), " task create talk.3 (id=" + repl.GetId(), " task running talk.3 (id=" + repl.GetId()}
	at := 0
	for _, w := range want {
		i := strings.Index(out[at:], w)
		if i < 0 {
			t.Fatalf("history lacks %q after the lines before it:\n%s", w, out)
		}
		at += i
	}
	t.Logf("events from the history:\n%s", out)
}

// hasEvent reports whether one of the JSON lines of `berth events --format
// json` is the event given. Lines are parsed, not matched as text:
// protojson varies its whitespace on purpose.
func hasEvent(out, action, id, name string) bool {
	for _, line := range strings.Split(out, "\n") {
		var ev struct{ Action, ID, Name string }
		if json.Unmarshal([]byte(line), &ev) == nil && ev.Action == action && ev.ID == id && ev.Name == name {
			return true
		}
	}
	return false
}
