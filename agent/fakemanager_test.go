package agent

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"berth/ca"
	pb "berth/proto/berth/v1"
)

// fakeCluster is the state fake managers share: a real CA, a join token,
// the tasks assigned to the one agent under test and what it reported.
type fakeCluster struct {
	root  *ca.Root
	token ca.Token

	mu        sync.Mutex
	tasks     map[string]*pb.Task
	secrets   map[string][]byte
	reports   map[string][]*pb.TaskStatus
	subs      map[chan *pb.SessionMessage]bool
	managers  []*pb.WeightedPeer
	insecure  []string
	sessions  map[string]string // session ID → manager addr
	lastDesc  *pb.NodeDescription
	issued    int
	heartbeat time.Duration
	beats     int // heartbeats received
	// promoted is the node's desired role manager: sessions say so and
	// NodeCA issues a manager certificate to a renewal that asks for one.
	promoted   bool
	clusterKey []byte
	// gossipKey and gossipAccept are the cluster's gossip keys.
	gossipKey    []byte
	gossipAccept [][]byte
}

func newFakeCluster(t *testing.T) *fakeCluster {
	t.Helper()
	root, err := ca.NewRoot("test-cluster", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ca.NewToken(root.Hash())
	if err != nil {
		t.Fatal(err)
	}
	return &fakeCluster{
		root: root, token: tok, tasks: map[string]*pb.Task{}, secrets: map[string][]byte{},
		reports: map[string][]*pb.TaskStatus{}, subs: map[chan *pb.SessionMessage]bool{},
		sessions: map[string]string{}, heartbeat: 200 * time.Millisecond,
	}
}

// setTask assigns (or updates) a task and streams the change.
func (c *fakeCluster) setTask(t *pb.Task) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.tasks[t.Id]; ok && t.Status == nil {
		t.Status = old.Status
	}
	c.tasks[t.Id] = t
	c.broadcast(&pb.SessionMessage{Changes: []*pb.AssignmentChange{{Item: &pb.AssignmentChange_Task{Task: proto.Clone(t).(*pb.Task)}}}})
}

// setDesired changes a task's desired state.
func (c *fakeCluster) setDesired(id string, s pb.TaskState) {
	c.mu.Lock()
	t := proto.Clone(c.tasks[id]).(*pb.Task)
	c.mu.Unlock()
	t.DesiredState = s
	c.setTask(t)
}

// removeTask takes a task out of the assignment.
func (c *fakeCluster) removeTask(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.tasks, id)
	c.broadcast(&pb.SessionMessage{Changes: []*pb.AssignmentChange{{Action: pb.AssignmentChange_ACTION_REMOVE, Item: &pb.AssignmentChange_Task{Task: &pb.Task{Id: id}}}}})
}

func (c *fakeCluster) setSecret(id string, data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.secrets[id] = data
	c.broadcast(&pb.SessionMessage{Changes: []*pb.AssignmentChange{{Item: &pb.AssignmentChange_SecretData{SecretData: &pb.SecretData{SecretId: id, Data: data}}}}})
}

func (c *fakeCluster) broadcast(m *pb.SessionMessage) {
	for ch := range c.subs {
		ch <- m
	}
}

// full is the first message of a session; callers hold mu.
func (c *fakeCluster) full(sid, node string) *pb.SessionMessage {
	m := &pb.SessionMessage{
		SessionId: sid, NodeId: node, Full: true, HeartbeatPeriod: durationpb.New(c.heartbeat),
		Managers: c.managers, InsecureRegistries: c.insecure,
		DesiredRole: c.desiredRole().Enum(),
		GossipKey:   c.gossipKey, GossipAcceptKeys: c.gossipAccept,
	}
	for id, d := range c.secrets {
		m.Changes = append(m.Changes, &pb.AssignmentChange{Item: &pb.AssignmentChange_SecretData{SecretData: &pb.SecretData{SecretId: id, Data: d}}})
	}
	for _, t := range c.tasks {
		m.Changes = append(m.Changes, &pb.AssignmentChange{Item: &pb.AssignmentChange_Task{Task: proto.Clone(t).(*pb.Task)}})
	}
	return m
}

// setGossipKeys changes the cluster's gossip keys and streams them, as a
// rotation step does.
func (c *fakeCluster) setGossipKeys(key []byte, accept [][]byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gossipKey, c.gossipAccept = key, accept
	c.broadcast(&pb.SessionMessage{GossipKey: key, GossipAcceptKeys: accept})
}

// desiredRole is the node's desired role; callers hold mu.
func (c *fakeCluster) desiredRole() pb.NodeSpec_Role {
	if c.promoted {
		return pb.NodeSpec_ROLE_MANAGER
	}
	return pb.NodeSpec_ROLE_WORKER
}

// setPromoted changes the node's desired role and streams it.
func (c *fakeCluster) setPromoted(promoted bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.promoted = promoted
	c.broadcast(&pb.SessionMessage{DesiredRole: c.desiredRole().Enum()})
}

// latest is the last status the agent reported for a task.
func (c *fakeCluster) latest(id string) *pb.TaskStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	r := c.reports[id]
	if len(r) == 0 {
		return nil
	}
	return r[len(r)-1]
}

func (c *fakeCluster) reported(id string) []*pb.TaskStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*pb.TaskStatus(nil), c.reports[id]...)
}

// fakeManager serves the Dispatcher and NodeCA of a fakeCluster on
// 127.0.0.1 with mutual TLS, as a manager does.
type fakeManager struct {
	pb.UnimplementedDispatcherServer
	pb.UnimplementedNodeCAServer
	c    *fakeCluster
	addr string
	srv  *grpc.Server
	done chan struct{}
}

func startFakeManager(t *testing.T, c *fakeCluster, name string) *fakeManager {
	t.Helper()
	key, csr, err := ca.NewKeyAndCSR()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := c.root.Issue(ca.IssueRequest{CSRPEM: csr, NodeID: name, Role: ca.RoleManager, Lifetime: time.Hour}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	creds, err := ca.NewCredentials(c.root.CertPEM, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeManager{c: c, addr: ln.Addr().String(), done: make(chan struct{})}
	m.srv = grpc.NewServer(grpc.Creds(credentials.NewTLS(creds.ServerConfig())))
	pb.RegisterDispatcherServer(m.srv, m)
	pb.RegisterNodeCAServer(m.srv, m)
	go func() { defer close(m.done); m.srv.Serve(ln) }()
	t.Cleanup(m.stop)
	return m
}

// stop kills the manager: listener and every connection close at once.
func (m *fakeManager) stop() {
	m.srv.Stop()
	<-m.done
}

// caller is the verified identity of the calling node.
func caller(ctx context.Context) (ca.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ca.Identity{}, status.Error(codes.Unauthenticated, "no peer")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return ca.Identity{}, status.Error(codes.Unauthenticated, "no client certificate of this cluster")
	}
	return ca.IdentityOf(info.State.VerifiedChains[0][0])
}

func (m *fakeManager) GetRootCACertificate(context.Context, *pb.GetRootCACertificateRequest) (*pb.GetRootCACertificateResponse, error) {
	return &pb.GetRootCACertificateResponse{Certificate: m.c.root.CertPEM}, nil
}

func (m *fakeManager) IssueNodeCertificate(ctx context.Context, req *pb.IssueNodeCertificateRequest) (*pb.IssueNodeCertificateResponse, error) {
	var node string
	role := pb.NodeSpec_ROLE_WORKER
	if req.GetToken() != "" {
		tok, err := ca.ParseToken(req.GetToken())
		if err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		if !m.c.token.Matches(tok) {
			return nil, status.Error(codes.PermissionDenied, "invalid join token: it may have been rotated; get the current one with `berth cluster join-token worker`")
		}
		m.c.mu.Lock()
		m.c.issued++
		node = fmt.Sprintf("node%d", m.c.issued)
		m.c.mu.Unlock()
	} else {
		id, err := caller(ctx)
		if err != nil {
			return nil, err
		}
		node = id.NodeID
		if req.DesiredRole != nil && req.GetDesiredRole() == pb.NodeSpec_ROLE_MANAGER {
			m.c.mu.Lock()
			promoted := m.c.promoted
			m.c.mu.Unlock()
			if !promoted {
				return nil, status.Error(codes.PermissionDenied, "node is a worker and was not promoted")
			}
			role = pb.NodeSpec_ROLE_MANAGER
		}
	}
	name := ca.RoleWorker
	if role == pb.NodeSpec_ROLE_MANAGER {
		name = ca.RoleManager
	}
	cert, err := m.c.root.Issue(ca.IssueRequest{CSRPEM: req.GetCsr(), NodeID: node, Role: name, Lifetime: time.Hour}, time.Now())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	resp := &pb.IssueNodeCertificateResponse{NodeId: node, Role: role, Certificate: cert}
	if role == pb.NodeSpec_ROLE_MANAGER {
		resp.ClusterKey = m.c.clusterKey
	}
	return resp, nil
}

func (m *fakeManager) Session(req *pb.SessionRequest, stream pb.Dispatcher_SessionServer) error {
	id, err := caller(stream.Context())
	if err != nil {
		return err
	}
	sid := fmt.Sprintf("s-%s-%d", m.addr, time.Now().UnixNano())
	ch := make(chan *pb.SessionMessage, 64)
	m.c.mu.Lock()
	m.c.sessions[sid] = m.addr
	m.c.lastDesc = req.GetDescription()
	m.c.subs[ch] = true
	first := m.c.full(sid, id.NodeID)
	m.c.mu.Unlock()
	defer func() {
		m.c.mu.Lock()
		delete(m.c.subs, ch)
		m.c.mu.Unlock()
	}()
	if err := stream.Send(first); err != nil {
		return err
	}
	for {
		select {
		case msg := <-ch:
			msg.SessionId = sid
			if err := stream.Send(msg); err != nil {
				return err
			}
		case <-stream.Context().Done():
			return nil
		}
	}
}

func (m *fakeManager) Heartbeat(ctx context.Context, req *pb.HeartbeatRequest) (*pb.HeartbeatResponse, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if _, ok := m.c.sessions[req.GetSessionId()]; !ok {
		return nil, status.Error(codes.FailedPrecondition, "unknown session")
	}
	m.c.beats++
	return &pb.HeartbeatResponse{Period: durationpb.New(m.c.heartbeat)}, nil
}

func (m *fakeManager) UpdateTaskStatus(ctx context.Context, req *pb.UpdateTaskStatusRequest) (*pb.UpdateTaskStatusResponse, error) {
	m.c.mu.Lock()
	defer m.c.mu.Unlock()
	if _, ok := m.c.sessions[req.GetSessionId()]; !ok {
		return nil, status.Error(codes.FailedPrecondition, "unknown session")
	}
	for _, u := range req.GetUpdates() {
		m.c.reports[u.GetTaskId()] = append(m.c.reports[u.GetTaskId()], u.GetStatus())
		if t, ok := m.c.tasks[u.GetTaskId()]; ok {
			t.Status = u.GetStatus()
		}
	}
	return &pb.UpdateTaskStatusResponse{}, nil
}
