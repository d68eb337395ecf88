package agent

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// fakeAttachMgr is the managers' AttachNetwork and DetachNetwork. deliver,
// if set, gets each attachment task it makes before it answers, as a
// session may stream it before the answer arrives.
type fakeAttachMgr struct {
	mu       sync.Mutex
	refuse   error
	n        int
	attached []*pb.AttachNetworkRequest
	detached []string
	deliver  func(t *pb.Task)
}

func (m *fakeAttachMgr) AttachNetwork(ctx context.Context, req *pb.AttachNetworkRequest) (*pb.Task, error) {
	m.mu.Lock()
	if m.refuse != nil {
		m.mu.Unlock()
		return nil, m.refuse
	}
	m.n++
	t := attachTask(fmt.Sprintf("att%d", m.n), req.GetContainerId())
	m.attached = append(m.attached, req)
	deliver := m.deliver
	m.mu.Unlock()
	if deliver != nil {
		deliver(t)
	}
	return t, nil
}

func (m *fakeAttachMgr) DetachNetwork(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.detached = append(m.detached, id)
	return nil
}

func (m *fakeAttachMgr) wasDetached(id string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Contains(m.detached, id)
}

func (n *fakeNet) built(string) bool { return true }

func (n *fakeNet) pidOf(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.attached[id]
}

func (n *fakeNet) wasDetached(id string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Contains(n.detached, id)
}

func attachTask(id, container string) *pb.Task {
	return &pb.Task{
		Id: id, DesiredState: pb.TaskState_TASK_STATE_RUNNING,
		Spec: &pb.TaskSpec{Attachment: &pb.NetworkAttachmentSpec{ContainerId: container,
			Networks: []*pb.NetworkAttachment{{Target: "n1", Aliases: []string{"a1"}}}}},
		Networks: []*pb.NetworkAttachmentStatus{{NetworkId: "n1", Addresses: []string{"10.0.1.5/24"}, Aliases: []string{"a1"}}},
		Status:   &pb.TaskStatus{State: pb.TaskState_TASK_STATE_ASSIGNED},
	}
}

// attachRig is attachments over fakes, run until the test ends.
type attachRig struct {
	a    *attachments
	mgr  *fakeAttachMgr
	net  *fakeNet
	rec  *recorder
	dir  string
	stop func() // ends the daemon's run; containers stay attached
}

func newAttachRig(t *testing.T, dir string) *attachRig {
	t.Helper()
	r := &attachRig{mgr: &fakeAttachMgr{}, net: &fakeNet{attached: map[string]int{}}, rec: &recorder{by: map[string][]*pb.TaskStatus{}}, dir: dir}
	r.a = newAttachments(dir, r.mgr, r.rec.put, func(string) {}, testLogger())
	r.a.net = r.net
	r.a.dns = func(id string) (string, bool) { return "10.0.1.1", id == "n1" }
	r.mgr.deliver = func(tk *pb.Task) { r.a.assign(context.Background(), false, []*pb.Task{tk}, nil) }
	if err := r.a.load(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.a.run(ctx) }()
	r.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(r.stop)
	return r
}

// sleeper starts a process in a network namespace of its own, to stand
// for a container's init; it is killed at the end of the test.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: a process in a network namespace of its own")
	}
	cmd := exec.Command("sleep", "600")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd
}

func req(id string, pid int, nets ...string) *pb.AttachContainerRequest {
	r := &pb.AttachContainerRequest{ContainerId: id, Pid: int64(pid)}
	for _, n := range nets {
		r.Networks = append(r.Networks, &pb.NetworkAttachment{Target: n, Aliases: []string{"a1"}})
	}
	return r
}

// TestAttachContainerRefuses: bad requests and the managers' refusals
// come back with their codes and messages, and leave no attachment.
func TestAttachContainerRefuses(t *testing.T) {
	pid := sleeper(t).Process.Pid
	refused := status.Error(codes.FailedPrecondition, "network n1 was created without --attachable")
	for _, tc := range []struct {
		name string
		req  *pb.AttachContainerRequest
		set  func(r *attachRig)
		code codes.Code
		want string
	}{
		{"no overlay", req("c1", pid, "n1"), func(r *attachRig) { r.a.net = nil }, codes.FailedPrecondition, "--overlay=false"},
		{"bad name", req("../x", pid, "n1"), nil, codes.InvalidArgument, "container_id"},
		{"no network", req("c1", pid), nil, codes.InvalidArgument, "at least one network"},
		{"empty target", req("c1", pid, ""), nil, codes.InvalidArgument, "target is empty"},
		{"no pid", req("c1", 0, "n1"), nil, codes.InvalidArgument, "pid 0"},
		{"dead pid", req("c1", 1<<22+7, "n1"), nil, codes.InvalidArgument, "no such process"},
		{"not attachable", req("c1", pid, "n1"), func(r *attachRig) { r.mgr.refuse = refused }, codes.FailedPrecondition, "without --attachable"},
		{"the node's namespace", req("c1", os.Getpid(), "n1"), nil, codes.FailedPrecondition, "shares the node's own network namespace"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newAttachRig(t, t.TempDir())
			if tc.set != nil {
				tc.set(r)
			}
			_, err := r.a.attach(context.Background(), tc.req)
			if status.Code(err) != tc.code || !strings.Contains(status.Convert(err).Message(), tc.want) {
				t.Fatalf("err = %v, want %s naming %q", err, tc.code, tc.want)
			}
			if ents, _ := os.ReadDir(r.dir); len(ents) != 0 || len(r.net.attached) != 0 {
				t.Fatalf("a refused attach left records %v or interfaces %v", ents, r.net.attached)
			}
		})
	}
}

// TestAttachContainerAnswers: the container's namespace is wired with its
// pid once the attachment reached the node, the answer holds its
// addresses and the network's DNS server, the attachment is RUNNING and
// recorded; asking again for the same container is refused.
func TestAttachContainerAnswers(t *testing.T) {
	r := newAttachRig(t, t.TempDir())
	pid := sleeper(t).Process.Pid
	resp, err := r.a.attach(context.Background(), req("c1", pid, "n1"))
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetAttachmentId() != "att1" || len(resp.GetNetworks()) != 1 || resp.GetNetworks()[0].GetAddresses()[0] != "10.0.1.5/24" ||
		!slices.Equal(resp.GetNameservers(), []string{"10.0.1.1"}) {
		t.Fatalf("answer %v", resp)
	}
	if got := r.net.pidOf("att1"); got != pid {
		t.Fatalf("namespace wired with pid %d, want %d", got, pid)
	}
	if st := r.rec.last("att1"); st.GetState() != pb.TaskState_TASK_STATE_RUNNING || st.GetContainer().GetContainerId() != "c1" {
		t.Fatalf("status %v, want RUNNING for c1", st)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "c1.json")); err != nil {
		t.Fatalf("no record: %v", err)
	}
	if _, err := r.a.attach(context.Background(), req("c1", pid, "n1")); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second attach of c1: %v, want AlreadyExists", err)
	}
}

// TestAttachmentEndsWithContainer: when the container's init ends, its
// interfaces go, its attachment is reported COMPLETE and ended with the
// managers, and its record is removed; DetachContainer does it at once.
func TestAttachmentEndsWithContainer(t *testing.T) {
	r := newAttachRig(t, t.TempDir())
	c1, c2 := sleeper(t), sleeper(t)
	for i, c := range []*exec.Cmd{c1, c2} {
		if _, err := r.a.attach(context.Background(), req(fmt.Sprintf("c%d", i+1), c.Process.Pid, "n1")); err != nil {
			t.Fatal(err)
		}
	}
	if err := c1.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	r.waitEnded(t, "att1", "c1")
	if err := r.a.detach(context.Background(), "c2"); err != nil {
		t.Fatal(err)
	}
	r.waitEnded(t, "att2", "c2")
	if err := r.a.detach(context.Background(), "c3"); err != nil {
		t.Fatalf("detaching a container not attached: %v", err)
	}
}

func (r *attachRig) waitEnded(t *testing.T, task, ctr string) {
	t.Helper()
	await.True(t, 5*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(r.dir, ctr+".json"))
		return r.mgr.wasDetached(task) && os.IsNotExist(err)
	}, "%s: DetachNetwork and the record's removal", ctr)
	if !r.net.wasDetached(task) || r.rec.last(task).GetState() != pb.TaskState_TASK_STATE_COMPLETE {
		t.Fatalf("%s: interfaces detached %v, last status %v; want detached, COMPLETE", ctr, r.net.wasDetached(task), r.rec.last(task))
	}
}

// TestAttachmentsAdoptedAfterRestart: a new daemon on the same data dir
// keeps a live container's attachment (registered with the overlay again
// when its task arrives, VIP tables and all) and ends a dead one's.
func TestAttachmentsAdoptedAfterRestart(t *testing.T) {
	dir := t.TempDir()
	live, dead := sleeper(t), sleeper(t)
	first := newAttachRig(t, dir)
	for i, c := range []*exec.Cmd{live, dead} {
		if _, err := first.a.attach(context.Background(), req(fmt.Sprintf("c%d", i+1), c.Process.Pid, "n1")); err != nil {
			t.Fatal(err)
		}
	}
	// The first daemon exits; c2's init dies before the next one starts.
	first.stop()
	if err := dead.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	await.True(t, 5*time.Second, func() bool { return !sameProc(dead.Process.Pid, mustStart(t, first, "c2")) }, "c2 ends")
	second := newAttachRig(t, dir)
	second.waitEnded(t, "att2", "c2")
	second.a.assign(context.Background(), true, []*pb.Task{attachTask("att1", "c1"), attachTask("att2", "c2")}, nil)
	if got := second.net.pidOf("att1"); got != live.Process.Pid {
		t.Fatalf("adopted c1 registered with pid %d, want %d", got, live.Process.Pid)
	}
	if second.mgr.wasDetached("att1") {
		t.Fatal("the live container's attachment was ended")
	}
}

// mustStart is the recorded start time of container id's init.
func mustStart(t *testing.T, r *attachRig, id string) uint64 {
	t.Helper()
	rec, err := readRecord(recordFile(r.dir, id))
	if err != nil {
		t.Fatal(err)
	}
	return rec.Start
}

// TestOrphanAttachmentEnded: an attachment task assigned to the node that
// no container here has (its record lost) is ended with the managers.
func TestOrphanAttachmentEnded(t *testing.T) {
	r := newAttachRig(t, t.TempDir())
	r.a.assign(context.Background(), true, []*pb.Task{attachTask("lost1", "gone")}, nil)
	await.True(t, 5*time.Second, func() bool { return r.mgr.wasDetached("lost1") }, "DetachNetwork of the orphan")
}

// TestControllerIgnoresAttachmentTasks: the reconciler never runs a
// container (nor pulls) for an attachment task, and reports nothing for
// it; the attachments get it.
func TestControllerIgnoresAttachmentTasks(t *testing.T) {
	r := newRig(t)
	att := newAttachRig(t, t.TempDir())
	r.w.attach = att.a
	r.assign(t, true, attachTask("lost1", "gone"), task("t1", pb.TaskState_TASK_STATE_RUNNING))
	r.waitState(t, "t1", pb.TaskState_TASK_STATE_RUNNING)
	await.True(t, 5*time.Second, func() bool { return att.mgr.wasDetached("lost1") }, "the attachment task reaches the attachments")
	if r.exec.runCount() != 1 || len(r.rec.all("lost1")) != 0 || slices.Contains(r.w.running(), "lost1") {
		t.Fatalf("containers run %d (want 1), statuses for the attachment %v, controllers %v", r.exec.runCount(), r.rec.all("lost1"), r.w.running())
	}
}

// TestLocalSocket: LocalAgent is served on a root-only socket that
// replaces a stale one and is gone once the daemon stops; the managers'
// refusal reaches the caller with its code and message.
func TestLocalSocket(t *testing.T) {
	r := newAttachRig(t, t.TempDir())
	r.mgr.refuse = status.Error(codes.NotFound, "network nope not found")
	path := filepath.Join(t.TempDir(), LocalSocket)
	if err := os.WriteFile(path, nil, 0o644); err != nil { // stale
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- serveLocal(ctx, path, &localAPI{att: r.a}) }()
	await.True(t, 5*time.Second, func() bool {
		fi, err := os.Stat(path)
		return err == nil && fi.Mode().Type() == os.ModeSocket
	}, "socket at %s", path)
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	conn, err := grpc.NewClient("unix://"+path, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := pb.NewLocalAgentClient(conn)
	_, err = c.AttachContainer(ctx, req("c1", sleeper(t).Process.Pid, "nope"))
	if status.Code(err) != codes.NotFound || status.Convert(err).Message() != "network nope not found" {
		t.Fatalf("AttachContainer: %v, want the managers' NotFound as it came", err)
	}
	if _, err := c.DetachContainer(ctx, &pb.DetachContainerRequest{ContainerId: "c1"}); err != nil {
		t.Fatalf("DetachContainer of a container not attached: %v", err)
	}
	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after the daemon stopped: %v", err)
	}
}

// TestSweepLeavesRunContainers: a full assignment's sweep removes what no
// task uses, but not the root filesystem of a container of berth-agent
// run (they share the node's image store): a daemon's restart or a new
// session used to delete a running -d container's snapshot.
func TestSweepLeavesRunContainers(t *testing.T) {
	r := newRig(t)
	r.exec.add("left-by-a-task")
	r.exec.add("solo")
	r.w.others = func() map[string]bool { return map[string]bool{"solo": true} }
	r.assign(t, true)
	await.True(t, 5*time.Second, func() bool { return r.exec.wasRemoved("left-by-a-task") }, "the sweep")
	if r.exec.wasRemoved("solo") {
		t.Fatal("the sweep removed berth-agent run's container solo")
	}
}

// TestAttachmentEndedByManagers: when the managers stop assigning a
// container's attachment, or want it shut down, the node takes the
// container off its networks and forgets it.
func TestAttachmentEndedByManagers(t *testing.T) {
	r := newAttachRig(t, t.TempDir())
	for _, id := range []string{"c1", "c2"} {
		if _, err := r.a.attach(context.Background(), req(id, sleeper(t).Process.Pid, "n1")); err != nil {
			t.Fatal(err)
		}
	}
	stop := attachTask("att2", "c2")
	stop.DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN
	r.a.assign(context.Background(), true, []*pb.Task{stop}, nil) // att1 gone, att2 to stop
	r.waitEnded(t, "att1", "c1")
	r.waitEnded(t, "att2", "c2")
}
