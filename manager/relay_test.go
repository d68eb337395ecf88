package manager

import (
	"context"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// fakeAgent is a worker's session with the leader, over mutual TLS, that
// reports its tasks running and answers requests with serve.
type fakeAgent struct {
	t      *testing.T
	disp   pb.DispatcherClient
	sid    string
	serve  func(ctx context.Context, r *pb.AgentRequest)
	stream pb.Dispatcher_SessionClient
}

func startFakeAgent(t *testing.T, leader *testManager, serve func(*fakeAgent, context.Context, *pb.AgentRequest)) *fakeAgent {
	t.Helper()
	creds := workerCreds(t, leader)
	conn := dialTLS(t, leader.m.Addr(), credentials.NewTLS(creds.ClientConfig()))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	a := &fakeAgent{t: t, disp: pb.NewDispatcherClient(conn)}
	a.serve = func(ctx context.Context, r *pb.AgentRequest) { serve(a, ctx, r) }
	stream, err := a.disp.Session(ctx, &pb.SessionRequest{Description: &pb.NodeDescription{
		Hostname: "fake", Platform: &pb.Platform{Os: "linux", Architecture: "amd64"},
		Resources: &pb.ResourceSet{NanoCpus: 4e9, MemoryBytes: 4 << 30},
	}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	a.sid, a.stream = first.GetSessionId(), stream
	go a.run(ctx)
	return a
}

// run reports every assigned task running and serves requests.
func (a *fakeAgent) run(ctx context.Context) {
	for {
		m, err := a.stream.Recv()
		if err != nil {
			return
		}
		var ups []*pb.TaskStatusUpdate
		for _, c := range m.GetChanges() {
			if tk := c.GetTask(); tk != nil && c.GetAction() == pb.AssignmentChange_ACTION_UPDATE && tk.GetStatus().GetState() < pb.TaskState_TASK_STATE_RUNNING {
				ups = append(ups, &pb.TaskStatusUpdate{TaskId: tk.GetId(), Status: &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING, Timestamp: timestamppb.Now()}})
			}
		}
		if len(ups) > 0 {
			_, _ = a.disp.UpdateTaskStatus(ctx, &pb.UpdateTaskStatusRequest{SessionId: a.sid, Updates: ups})
		}
		for _, r := range m.GetRequests() {
			if !r.GetCancel() {
				go a.serve(ctx, r)
			}
		}
	}
}

// TestLogsThroughAFollower: a client of a follower reads a task's log from
// an agent whose session is with the leader.
func TestLogsThroughAFollower(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, follower := c.waitLeader(), c.follower()
	startFakeAgent(t, leader, func(a *fakeAgent, ctx context.Context, r *pb.AgentRequest) {
		st, err := a.disp.PublishLogs(ctx)
		if err != nil {
			return
		}
		_ = st.Send(&pb.PublishLogsRequest{SessionId: a.sid, RequestId: r.GetId(), Messages: []*pb.LogMessage{
			{Data: []byte("hello from " + r.GetLogs().GetTaskId() + "\n"), TimestampUnixNano: 1},
		}})
		_, _ = st.CloseAndRecv()
	})
	ctx := ctxFor(t, settle)
	cc := follower.control()
	spec := serviceSpec("web")
	spec.Task.Placement = &pb.Placement{Constraints: []string{"node.role==worker"}}
	if _, err := cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	var task *pb.Task
	await.True(t, settle, func() bool {
		resp, err := cc.ListTasks(ctx, &pb.ListTasksRequest{})
		for _, tk := range resp.GetTasks() {
			if tk.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
				task = tk
			}
		}
		return err == nil && task != nil
	}, "the service's task runs on the fake agent")

	st, err := cc.ServiceLogs(ctx, &pb.ServiceLogsRequest{ServiceId: "web"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.Recv()
	if err != nil {
		t.Fatalf("logs through the follower: %v", err)
	}
	if string(m.GetData()) != "hello from "+task.GetId()+"\n" || m.GetNodeId() != task.GetNodeId() || m.GetSlot() != 1 {
		t.Fatalf("got %v", m)
	}
	if _, err := st.Recv(); err != io.EOF {
		t.Fatalf("after the one line: %v, want the end", err)
	}
}

// TestExecThroughAFollower: a client of a follower runs a command in a
// task whose agent has its session with the leader; a worker's
// certificate may not exec.
func TestExecThroughAFollower(t *testing.T) {
	c := newTestCluster(t, 3)
	leader, follower := c.waitLeader(), c.follower()
	// The fake agent echoes stdin, upper-cased, and exits with the
	// length of what it read.
	startFakeAgent(t, leader, func(a *fakeAgent, ctx context.Context, r *pb.AgentRequest) {
		st, err := a.disp.Exec(ctx)
		if err != nil {
			return
		}
		_ = st.Send(&pb.ExecOutput{Kind: &pb.ExecOutput_RequestId{RequestId: r.GetId()}})
		n := 0
		for {
			in, err := st.Recv()
			if err != nil {
				return
			}
			if in.GetCloseStdin() {
				_ = st.Send(&pb.ExecOutput{Kind: &pb.ExecOutput_ExitCode{ExitCode: int32(n)}})
				_ = st.CloseSend()
				_, _ = st.Recv()
				return
			}
			n += len(in.GetStdin())
			_ = st.Send(&pb.ExecOutput{Kind: &pb.ExecOutput_Stdout{Stdout: []byte(strings.ToUpper(string(in.GetStdin())))}})
		}
	})
	ctx := ctxFor(t, settle)
	cc := follower.control()
	spec := serviceSpec("web")
	spec.Task.Placement = &pb.Placement{Constraints: []string{"node.role==worker"}}
	if _, err := cc.CreateService(ctx, &pb.CreateServiceRequest{Spec: spec}); err != nil {
		t.Fatal(err)
	}
	await.True(t, settle, func() bool {
		resp, err := cc.ListTasks(ctx, &pb.ListTasksRequest{})
		return err == nil && len(resp.GetTasks()) == 1 && resp.GetTasks()[0].GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING
	}, "the service's task runs on the fake agent")

	st, err := cc.Exec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = st.Send(&pb.ExecInput{Kind: &pb.ExecInput_Start{Start: &pb.ExecStart{Task: "web", Args: []string{"cat"}, Stdin: true}}})
	_ = st.Send(&pb.ExecInput{Kind: &pb.ExecInput_Stdin{Stdin: []byte("hello")}})
	_ = st.CloseSend()
	var got []string
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("exec through the follower: %v (got %v)", err, got)
		}
		got = append(got, m.String())
		if _, ok := m.GetKind().(*pb.ExecOutput_ExitCode); ok {
			if m.GetExitCode() != 5 {
				t.Fatalf("exit code %d, want 5", m.GetExitCode())
			}
			break
		}
	}
	if len(got) != 3 || !strings.Contains(got[0], "started") || !strings.Contains(got[1], "HELLO") {
		t.Fatalf("messages %v, want started, HELLO, exit code", got)
	}

	// A worker's certificate may not exec, on any manager.
	w := workerCreds(t, leader)
	conn := dialTLS(t, follower.m.Addr(), credentials.NewTLS(w.ClientConfig()))
	wst, err := pb.NewControlClient(conn).Exec(ctx)
	if err == nil {
		_ = wst.Send(&pb.ExecInput{Kind: &pb.ExecInput_Start{Start: &pb.ExecStart{Task: "web", Args: []string{"sh"}}}})
		_, err = wst.Recv()
	}
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("exec with a worker certificate: %v, want PermissionDenied", err)
	}
}
