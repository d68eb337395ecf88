package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// fakeWorker is a worker node without containers: it joins, keeps a
// dispatcher session with the description given, and lets a test report
// its tasks' states as an agent would. Tests of what the CLI shows about
// placed tasks use it where a real agent would add nothing but time.
type fakeWorker struct {
	id    string
	disp  pb.DispatcherClient
	mu    sync.Mutex
	sess  string
	tasks map[string]*pb.Task
}

// startFakeWorker joins the manager whose bundle is dir as a worker with
// that hostname and resources, and keeps its session until t ends.
func startFakeWorker(t *testing.T, dir, hostname string, res *pb.ResourceSet) *fakeWorker {
	t.Helper()
	addr, err := os.ReadFile(filepath.Join(dir, bundleAddr))
	if err != nil {
		t.Fatal(err)
	}
	var tok string
	await.NoError(t, 20*time.Second, func() (err error) {
		tok, err = berth(t, "--tls-dir", dir, "cluster", "join-token", "worker", "-q")
		return err
	}, "join-token worker")
	creds := joinWorker(t, strings.TrimSpace(string(addr)), strings.TrimSpace(tok))
	conn, err := grpc.NewClient(strings.TrimSpace(string(addr)), grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig())))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &fakeWorker{id: creds.Identity().NodeID, disp: pb.NewDispatcherClient(conn), tasks: map[string]*pb.Task{}}
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done; conn.Close() })
	desc := &pb.NodeDescription{Hostname: hostname, Resources: res, Platform: &pb.Platform{Os: "linux", Architecture: "amd64"}}
	go func() {
		defer close(done)
		w.session(ctx, desc)
	}()
	await.True(t, 20*time.Second, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.sess != "" }, "the fake worker's session opens")
	return w
}

// session keeps a session open, heartbeating, until ctx ends.
func (w *fakeWorker) session(ctx context.Context, desc *pb.NodeDescription) {
	for ctx.Err() == nil {
		stream, err := w.disp.Session(ctx, &pb.SessionRequest{Description: desc})
		if err != nil {
			continue
		}
		for {
			m, err := stream.Recv()
			if err != nil {
				break
			}
			w.mu.Lock()
			w.sess = m.GetSessionId()
			for _, ch := range m.GetChanges() {
				if t := ch.GetTask(); t != nil {
					w.tasks[t.GetId()] = t
				}
			}
			w.mu.Unlock()
			if p := m.GetHeartbeatPeriod(); p != nil {
				go w.heartbeat(ctx, m.GetSessionId(), p.AsDuration())
			}
		}
	}
}

func (w *fakeWorker) heartbeat(ctx context.Context, sess string, period time.Duration) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(period / 2):
		}
		if _, err := w.disp.Heartbeat(ctx, &pb.HeartbeatRequest{SessionId: sess}); err != nil {
			return
		}
	}
}

// assigned lists the tasks the managers gave the worker.
func (w *fakeWorker) assigned() []*pb.Task {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*pb.Task
	for _, t := range w.tasks {
		out = append(out, t)
	}
	return out
}

// report tells the managers task id is in state, with errMsg.
func (w *fakeWorker) report(id string, state pb.TaskState, errMsg string) error {
	return w.reportStatus(id, &pb.TaskStatus{State: state, Err: errMsg, Message: strings.ToLower(strings.TrimPrefix(state.String(), "TASK_STATE_"))})
}

// reportStatus tells the managers task id has status st, stamped now.
func (w *fakeWorker) reportStatus(id string, st *pb.TaskStatus) error {
	w.mu.Lock()
	sess := w.sess
	w.mu.Unlock()
	st.Timestamp = timestamppb.Now()
	_, err := w.disp.UpdateTaskStatus(context.Background(), &pb.UpdateTaskStatusRequest{SessionId: sess, Updates: []*pb.TaskStatusUpdate{{TaskId: id, Status: st}}})
	return err
}
