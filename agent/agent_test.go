package agent

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"berth/ca"
	"berth/internal/await"
	"berth/internal/escapetest"
	"berth/internal/testimage"
	pb "berth/proto/berth/v1"
)

func busyTask(id, image string, desired pb.TaskState, args ...string) *pb.Task {
	return &pb.Task{
		Id: id, ServiceId: "svc", DesiredState: desired,
		Spec: &pb.TaskSpec{Container: &pb.ContainerSpec{
			Image: image, Command: args, StopGracePeriod: durationpb.New(2 * time.Second),
		}},
		Status: &pb.TaskStatus{State: pb.TaskState_TASK_STATE_ASSIGNED},
	}
}

// TestAgentRunsAssignedTasks joins a fake cluster and runs real containers
// from a real registry: the life of a task, failures, secrets, an agent
// restart that adopts a running container, and session failover.
func TestAgentRunsAssignedTasks(t *testing.T) {
	needRoot(t)
	f := testimage.Serve(t)
	c := newFakeCluster(t)
	m1 := startFakeManager(t, c, "mgr1")
	dir := testDir(t)
	a := startAgent(t, dir, []string{m1.addr}, c.token.String())

	await.True(t, 10*time.Second, func() bool { return a.NodeID() != "" }, "agent joins")
	if !ca.Dir(filepath.Join(dir, "certs")).Exists() {
		t.Fatal("no identity saved in DATA_DIR/certs")
	}
	node := a.NodeID()
	t.Run("renew", func(t *testing.T) {
		_, csr, err := ca.NewKeyAndCSR()
		if err != nil {
			t.Fatal(err)
		}
		cert, root, err := a.renewCert(context.Background(), csr)
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := ca.ParseCertificate(cert)
		if err != nil {
			t.Fatal(err)
		}
		if id, _ := ca.IdentityOf(leaf); id.NodeID != node || ca.CertHash(root) != c.root.Hash() {
			t.Errorf("renewed certificate for %q (CA %.12s), want node %q of this cluster", id.NodeID, ca.CertHash(root), node)
		}
	})

	// A long-running task goes through every state up to RUNNING.
	c.setTask(busyTask("sleeper", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "sleep", "1000"))
	st := waitReported(t, c, "sleeper", pb.TaskState_TASK_STATE_RUNNING)
	// The reporter coalesces per task (latest wins), so which of
	// PREPARING and STARTING reach the manager depends on timing; the
	// controller tests see every state. Here: forward only, timestamped.
	var prev pb.TaskState
	for _, s := range c.reported("sleeper") {
		if s.GetTimestamp() == nil || s.GetState() < prev {
			t.Errorf("statuses not timestamped and forward-only: %v", reportList{c, "sleeper"})
		}
		prev = s.GetState()
	}
	t.Logf("reported: %v", reportList{c, "sleeper"})
	pid := st.GetContainer().GetPid()
	if st.GetContainer().GetContainerId() != "sleeper" || !alive(pid) {
		t.Fatalf("running status %v: container not alive", st.GetContainer())
	}
	c.mu.Lock()
	desc := c.lastDesc
	c.mu.Unlock()
	if desc.GetHostname() != "test-node" || desc.GetResources().GetNanoCpus() == 0 || desc.GetResources().GetMemoryBytes() == 0 ||
		desc.GetEngineLabels()["zone"] != "a" || desc.GetAddr() != "127.0.0.1" || desc.GetPlatform().GetOs() != "linux" {
		t.Errorf("node description %v", desc)
	}

	t.Run("exit code", func(t *testing.T) {
		c.setTask(busyTask("exit3", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "sh", "-c", "exit 3"))
		st := waitReported(t, c, "exit3", pb.TaskState_TASK_STATE_FAILED)
		if st.GetContainer().GetExitCode() != 3 || st.GetErr() != "task: non-zero exit (3)" {
			t.Errorf("failed status %v", st)
		}
	})
	t.Run("unknown image", func(t *testing.T) {
		c.setTask(busyTask("noimg", f.Registry.Addr()+"/nope:latest", pb.TaskState_TASK_STATE_RUNNING, "true"))
		st := waitReported(t, c, "noimg", pb.TaskState_TASK_STATE_REJECTED)
		if !strings.Contains(st.GetErr(), "nope") || !strings.Contains(strings.ToLower(st.GetErr()), "not found") {
			t.Errorf("rejected err %q should name the image and say it is not found", st.GetErr())
		}
	})
	t.Run("seccomp", func(t *testing.T) {
		// Tasks run under Docker's default profile unless their security
		// options say otherwise; options berth cannot apply reject the task.
		const script = `grep '^Seccomp:' /proc/self/status; unshare -U -r true 2>/dev/null; echo "unshare=$?"`
		for _, tc := range []struct {
			id, want string
			opts     []string
		}{
			{"filtered", "Seccomp:\t2\nunshare=1\n", nil},
			{"unconfined", "Seccomp:\t0\nunshare=0\n", []string{"seccomp=unconfined"}},
		} {
			tk := busyTask(tc.id, f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "sh", "-c", script)
			tk.Spec.Container.SecurityOpts = tc.opts
			c.setTask(tk)
			waitReported(t, c, tc.id, pb.TaskState_TASK_STATE_COMPLETE)
			var out bytes.Buffer
			if err := a.rt.Logs(context.Background(), tc.id, false, &out); err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.want {
				t.Errorf("task %s printed %q, want %q", tc.id, out.String(), tc.want)
			}
		}
		tk := busyTask("apparmor", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "true")
		tk.Spec.Container.SecurityOpts = []string{"apparmor=unconfined"}
		c.setTask(tk)
		if st := waitReported(t, c, "apparmor", pb.TaskState_TASK_STATE_REJECTED); !strings.Contains(st.GetErr(), "not supported") {
			t.Errorf("rejected with %q, want 'not supported'", st.GetErr())
		}
	})
	t.Run("unhealthy", func(t *testing.T) {
		tk := busyTask("sick", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "sleep", "1000")
		tk.Spec.Container.Healthcheck = &pb.HealthCheck{Test: []string{"CMD-SHELL", "exit 1"}, Interval: durationpb.New(100 * time.Millisecond), Retries: 2}
		c.setTask(tk)
		st := waitReported(t, c, "sick", pb.TaskState_TASK_STATE_FAILED)
		if st.GetErr() != "unhealthy container" || st.GetContainer().GetHealth() != pb.ContainerStatus_HEALTH_UNHEALTHY {
			t.Errorf("status %v", st)
		}
	})
	t.Run("no host descriptors", func(t *testing.T) {
		marker := escapetest.Plant(t, dir)
		c.setTask(busyTask("fdprobe", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "sh", "-c", marker.Script()))
		waitReported(t, c, "fdprobe", pb.TaskState_TASK_STATE_COMPLETE)
		var out bytes.Buffer
		if err := a.rt.Logs(context.Background(), "fdprobe", false, &out); err != nil {
			t.Fatal(err)
		}
		marker.Check(t, out.String())
	})
	t.Run("secret", func(t *testing.T) {
		c.setSecret("sec1", []byte("s3cr3t"))
		tk := busyTask("withsecret", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "sh", "-c", "cat /run/secrets/db_pass; stat -c 'perm=%a owner=%u:%g' /run/secrets/db_pass")
		tk.Spec.Container.Secrets = []*pb.SecretReference{{SecretId: "sec1", SecretName: "db", FileName: "db_pass", Uid: 1000, Gid: 1001, Mode: 0o400}}
		// A task of another service, on the same node, names no secret.
		other := busyTask("nosecret", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "sh", "-c", "ls -la /run/secrets; grep secrets /proc/mounts; echo end")
		c.setTask(tk)
		c.setTask(other)
		waitReported(t, c, "withsecret", pb.TaskState_TASK_STATE_COMPLETE)
		waitReported(t, c, "nosecret", pb.TaskState_TASK_STATE_COMPLETE)
		var out, otherOut bytes.Buffer
		if err := a.rt.Logs(context.Background(), "withsecret", false, &out); err != nil {
			t.Fatal(err)
		}
		if got := out.String(); !strings.Contains(got, "s3cr3t") || !strings.Contains(got, "perm=400 owner=1000:1001") {
			t.Errorf("container saw %q, want the secret with mode 400, owned by 1000:1001", got)
		}
		if err := a.rt.Logs(context.Background(), "nosecret", false, &otherOut); err != nil {
			t.Fatal(err)
		}
		if got := otherOut.String(); !strings.Contains(got, "end") || strings.Contains(got, "db_pass") || strings.Contains(got, "secrets") && strings.Contains(got, "tmpfs") {
			t.Errorf("a container naming no secret saw %q, want no /run/secrets", got)
		}
		c.removeTask("nosecret")
		c.removeTask("withsecret")
		await.True(t, 10*time.Second, func() bool {
			_, err := os.Stat(filepath.Join(dir, "secrets", "withsecret"))
			return os.IsNotExist(err)
		}, "secret files removed with the task")
	})

	// An agent restart adopts the running container: same process.
	a.stop()
	if !alive(pid) {
		t.Fatal("stopping the agent stopped its container")
	}
	a = startAgent(t, dir, []string{m1.addr}, "")
	await.True(t, 10*time.Second, func() bool { return a.NodeID() == node }, "restarted agent keeps node ID %s", node)
	before := len(c.reported("sleeper"))
	await.True(t, 10*time.Second, func() bool { return len(c.reported("sleeper")) > before }, "restarted agent reports the adopted task again")
	st = c.latest("sleeper")
	if st.GetState() != pb.TaskState_TASK_STATE_RUNNING || st.GetContainer().GetPid() != pid {
		t.Fatalf("after restart: %v, want RUNNING with pid %d", st, pid)
	}

	// Failover: the first manager dies, the agent moves to the second.
	m2 := startFakeManager(t, c, "mgr2")
	c.mu.Lock()
	c.managers = []*pb.WeightedPeer{{Addr: m1.addr, Weight: 2}, {Addr: m2.addr, Weight: 1}}
	c.mu.Unlock()
	c.setTask(busyTask("probe", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "true"))
	waitReported(t, c, "probe", pb.TaskState_TASK_STATE_COMPLETE)
	a.stop() // restart so the first session carries the managers list
	before = sessionsOn(c, m1.addr)
	a = startAgent(t, dir, []string{m1.addr}, "")
	await.True(t, 10*time.Second, func() bool { return sessionsOn(c, m1.addr) > before }, "session with the first manager")
	// The session counts once it is opened; the managers list arrives
	// with its first message. Stop m1 only after the agent has it.
	await.True(t, 10*time.Second, func() bool {
		a.peers.mu.Lock()
		defer a.peers.mu.Unlock()
		return slices.Contains(a.peers.all(), m2.addr)
	}, "the agent learned the second manager from its session")
	m1.stop()
	await.True(t, 15*time.Second, func() bool { return sessionsOn(c, m2.addr) >= 1 }, "agent fails over to the second manager")
	c.setTask(busyTask("after", f.Busybox.Tag, pb.TaskState_TASK_STATE_RUNNING, "true"))
	waitReported(t, c, "after", pb.TaskState_TASK_STATE_COMPLETE)

	// Restarted with only the dead first manager in --join, the agent
	// still reaches the second: it kept the managers its sessions named.
	a.stop()
	before = sessionsOn(c, m2.addr)
	a = startAgent(t, dir, []string{m1.addr}, "")
	await.True(t, 30*time.Second, func() bool { return sessionsOn(c, m2.addr) > before }, "restarted agent reaches the second manager from its saved list")

	// Shutdown stops the container; removal deletes it and its rootfs.
	c.setDesired("sleeper", pb.TaskState_TASK_STATE_SHUTDOWN)
	waitReported(t, c, "sleeper", pb.TaskState_TASK_STATE_SHUTDOWN)
	await.True(t, 10*time.Second, func() bool { return !alive(pid) }, "container process %d ends", pid)
	c.removeTask("sleeper")
	await.True(t, 10*time.Second, func() bool {
		_, err := a.rt.Get("sleeper")
		_, serr := os.Stat(filepath.Join(dir, "images", "containers", "sleeper"))
		return err != nil && os.IsNotExist(serr)
	}, "container and rootfs removed with the task")
}

func sessionsOn(c *fakeCluster, addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, a := range c.sessions {
		if a == addr {
			n++
		}
	}
	return n
}

// TestAgentJoinRefused: a wrong token, a malformed one and a token pinning
// another CA are refused with errors that say so.
func TestAgentJoinRefused(t *testing.T) {
	needRoot(t)
	c := newFakeCluster(t)
	m := startFakeManager(t, c, "mgr1")
	other, err := ca.NewToken(c.root.Hash())
	if err != nil {
		t.Fatal(err)
	}
	otherCA, _ := ca.NewRoot("other", time.Now())
	foreign, _ := ca.NewToken(otherCA.Hash())
	for _, tc := range []struct {
		name, token, want string
	}{
		{"rotated", other.String(), "invalid join token"},
		{"malformed", "BERTH-1-nothex-x", "--token"},
		{"other cluster", foreign.String(), "not the one the join token pins"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := startAgent(t, testDir(t), []string{m.addr}, tc.token)
			ended := make(chan error, 1)
			go func() { ended <- a.wait() }()
			var err error
			select {
			case err = <-ended:
			case <-time.After(20 * time.Second):
				t.Fatal("agent did not give up")
			}
			if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want ErrJoinRefused saying %q", err, tc.want)
			}
		})
	}
}
