package dispatcher

import (
	"bytes"
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"berth/ca"
	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/store"
)

const wait = 10 * time.Second

// clock is a fake clock the test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Secrets are "sealed" in tests by a prefix the opener checks.
var sealPrefix = []byte("sealed:")

func seal(b []byte) []byte { return append(bytes.Clone(sealPrefix), b...) }

func open(b []byte) ([]byte, error) {
	if !bytes.HasPrefix(b, sealPrefix) {
		return nil, errors.New("not sealed")
	}
	return bytes.TrimPrefix(b, sealPrefix), nil
}

// nodeKey carries the node identity in test RPCs instead of a TLS
// certificate.
const nodeKey = "x-test-node"

func identify(ctx context.Context) (ca.Identity, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if v := md.Get(nodeKey); len(v) == 1 {
		return ca.Identity{NodeID: v[0], Role: ca.RoleWorker, ClusterID: "c1"}, nil
	}
	return ca.Identity{}, status.Error(codes.Unauthenticated, "no test node identity")
}

// harness is a dispatcher served over gRPC (bufconn) with an in-memory
// store and a fake clock.
type harness struct {
	t     *testing.T
	st    *store.MemoryStore
	clock *clock
	d     *Dispatcher
	conn  *grpc.ClientConn
	stop  context.CancelFunc
	ran   chan error
}

func newHarness(t *testing.T, tune func(*Config)) *harness {
	t.Helper()
	clk := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	st := store.New(nil, store.WithClock(clk.Now))
	cfg := Config{
		Store: st, Now: clk.Now, HeartbeatPeriod: func() time.Duration { return time.Second }, HeartbeatGrace: 3, BatchWindow: 20 * time.Millisecond,
		Managers:           func() []*pb.WeightedPeer { return []*pb.WeightedPeer{{Addr: "10.0.0.1:4242", NodeId: "m1", Weight: 1}} },
		InsecureRegistries: func() []string { return []string{"registry.local:5000"} },
		GossipKeys:         func() ([]byte, [][]byte) { return []byte("gossip-key"), nil },
		GossipPeers:        func() []string { return []string{"10.0.0.1:7946"} },
		OpenSecret:         open,
		Identify:           identify,
	}
	if tune != nil {
		tune(&cfg)
	}
	h := &harness{t: t, st: st, clock: clk, d: New(cfg)}
	ln := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	pb.RegisterDispatcherServer(srv, h.d)
	go srv.Serve(ln)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return ln.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.conn = conn
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	h.start(ctx)
	t.Cleanup(func() {
		h.stopRun()
		conn.Close()
		srv.Stop()
	})
	return h
}

// start runs the dispatcher and waits until it serves.
func (h *harness) start(ctx context.Context) {
	h.t.Helper()
	ran := make(chan error, 1)
	h.ran = ran
	go func() { ran <- h.d.Run(ctx) }()
	await.True(h.t, wait, func() bool {
		h.d.mu.Lock()
		defer h.d.mu.Unlock()
		return h.d.term != nil
	}, "the dispatcher does not serve")
}

// stopRun ends the term and waits for Run to return.
func (h *harness) stopRun() {
	h.stop()
	if h.ran != nil {
		if err := <-h.ran; err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.ran = nil
	}
}

func (h *harness) client() pb.DispatcherClient { return pb.NewDispatcherClient(h.conn) }

// as is a context whose calls come from node.
func as(ctx context.Context, node string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, nodeKey, node)
}

// update writes to the store or fails the test.
func (h *harness) update(cb func(store.Tx) error) {
	h.t.Helper()
	if err := h.st.Update(context.Background(), cb); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) node(id string) *pb.Node {
	var n *pb.Node
	h.st.View(func(tx store.ReadTx) { n = tx.GetNode(id) })
	return n
}

func (h *harness) task(id string) *pb.Task {
	var t *pb.Task
	h.st.View(func(tx store.ReadTx) { t = tx.GetTask(id) })
	return t
}

// setTask changes a stored task.
func (h *harness) setTask(id string, change func(*pb.Task)) {
	h.t.Helper()
	h.update(func(tx store.Tx) error {
		t := proto.Clone(tx.GetTask(id)).(*pb.Task)
		change(t)
		return tx.UpdateTask(t)
	})
}

// agent is one node's open session as a test sees it.
type agent struct {
	t      *testing.T
	h      *harness
	node   string
	sid    string
	first  *pb.SessionMessage
	stream pb.Dispatcher_SessionClient
	cancel context.CancelFunc
	msgs   chan *pb.SessionMessage
	err    chan error
}

// session opens a session as node and reads its first message.
func (h *harness) session(node string) *agent {
	h.t.Helper()
	a, err := h.open(node)
	if err != nil {
		h.t.Fatalf("open a session for %s: %v", node, err)
	}
	return a
}

func (h *harness) open(node string) (*agent, error) {
	ctx, cancel := context.WithCancel(as(context.Background(), node))
	h.t.Cleanup(cancel)
	stream, err := h.client().Session(ctx, &pb.SessionRequest{Description: &pb.NodeDescription{
		Hostname: node + "-host", Addr: "192.0.2.10",
		Platform:  &pb.Platform{Os: "linux", Architecture: "amd64"},
		Resources: &pb.ResourceSet{NanoCpus: 2e9, MemoryBytes: 1 << 30}, EngineLabels: map[string]string{"zone": "a"},
	}})
	if err != nil {
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		return nil, err
	}
	a := &agent{t: h.t, h: h, node: node, sid: first.GetSessionId(), first: first, stream: stream, cancel: cancel,
		msgs: make(chan *pb.SessionMessage, 100), err: make(chan error, 1)}
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				a.err <- err
				return
			}
			a.msgs <- m
		}
	}()
	return a, nil
}

// next returns the next message that carries changes.
func (a *agent) next() *pb.SessionMessage {
	a.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m := <-a.msgs:
			if len(m.GetChanges()) > 0 {
				return m
			}
		case err := <-a.err:
			a.t.Fatalf("session of %s ended: %v", a.node, err)
		case <-timeout:
			a.t.Fatalf("no session message for %s within %s", a.node, wait)
		}
	}
}

// ended waits for the session stream to end and returns its error.
func (a *agent) ended() error {
	a.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case <-a.msgs:
		case err := <-a.err:
			return err
		case <-timeout:
			a.t.Fatalf("session of %s still open after %s", a.node, wait)
		}
	}
}

func (a *agent) heartbeat() (*pb.HeartbeatResponse, error) {
	return a.h.client().Heartbeat(as(context.Background(), a.node), &pb.HeartbeatRequest{SessionId: a.sid})
}

// describe renders a message's changes as "task:ID", "rm-task:ID",
// "secret:ID=DATA" and "rm-secret:ID", in order.
func describe(m *pb.SessionMessage) []string {
	var out []string
	for _, c := range m.GetChanges() {
		rm := c.GetAction() == pb.AssignmentChange_ACTION_REMOVE
		switch {
		case c.GetTask() != nil && rm:
			out = append(out, "rm-task:"+c.GetTask().GetId())
		case c.GetTask() != nil:
			out = append(out, "task:"+c.GetTask().GetId())
		case c.GetSecretData() != nil:
			out = append(out, "secret:"+c.GetSecretData().GetSecretId()+"="+string(c.GetSecretData().GetData()))
		case c.GetSecret() != nil && rm:
			out = append(out, "rm-secret:"+c.GetSecret().GetId())
		default:
			out = append(out, "?")
		}
	}
	return out
}

func task(id, node string, state, desired pb.TaskState, secrets ...string) *pb.Task {
	t := &pb.Task{
		Id: id, ServiceId: "svc", NodeId: node, DesiredState: desired,
		Status: &pb.TaskStatus{State: state},
		Spec:   &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "busybox"}},
	}
	for _, s := range secrets {
		t.Spec.Container.Secrets = append(t.Spec.Container.Secrets, &pb.SecretReference{SecretId: s, SecretName: s})
	}
	return t
}

func secret(id, data string) *pb.Secret {
	return &pb.Secret{Id: id, Spec: &pb.SecretSpec{Annotations: &pb.Annotations{Name: id}, Data: seal([]byte(data))}}
}

func workerNode(id string) *pb.Node {
	return &pb.Node{Id: id, Spec: &pb.NodeSpec{Annotations: &pb.Annotations{}},
		Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_UNKNOWN, Message: "joined; no session yet"}}
}

// awaitNode waits for a node's state and message.
func (h *harness) awaitNode(id string, state pb.NodeStatus_State, msg string) {
	h.t.Helper()
	await.True(h.t, wait, func() bool {
		n := h.node(id)
		return n.GetStatus().GetState() == state && n.GetStatus().GetMessage() == msg
	}, "node %s is not %s (%q): %v", id, state, msg, h.nodeStatus(id))
}

type statusOf struct {
	h  *harness
	id string
}

func (s statusOf) String() string { return s.h.node(s.id).GetStatus().String() }

func (h *harness) nodeStatus(id string) statusOf { return statusOf{h, id} }

// codeOf names an error's gRPC code.
func codeOf(err error) string { return status.Code(err).String() }

// nextRole returns the desired role of the next message that carries one.
func (a *agent) nextRole() pb.NodeSpec_Role {
	a.t.Helper()
	timeout := time.After(wait)
	for {
		select {
		case m := <-a.msgs:
			if m.DesiredRole != nil {
				return m.GetDesiredRole()
			}
		case err := <-a.err:
			a.t.Fatalf("session of %s ended: %v", a.node, err)
		case <-timeout:
			a.t.Fatalf("no desired role for %s within %s", a.node, wait)
		}
	}
}
