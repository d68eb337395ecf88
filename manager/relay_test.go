package manager

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc/credentials"
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
