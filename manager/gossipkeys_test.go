package manager

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/ca"
	"berth/discovery"
	"berth/internal/await"
	"berth/manager/dispatcher"
	pb "berth/proto/berth/v1"
)

// gossipAgent is a worker's session driven by hand with a real gossip
// member that takes the keys its session delivers, as berth-agent does.
type gossipAgent struct {
	id     string
	g      *discovery.Gossip
	mu     sync.Mutex
	dead   []string // members this one saw dead or leave
	ended  chan error
	cancel context.CancelFunc
}

func startGossipAgent(t *testing.T, tm *testManager, creds *ca.Credentials) *gossipAgent {
	t.Helper()
	s, err := openSession(t, tm.m.Addr(), creds)
	if err != nil {
		t.Fatalf("session: %v", err)
	}
	a := &gossipAgent{id: creds.Identity().NodeID, ended: make(chan error, 1)}
	g, err := discovery.NewGossip(discovery.GossipConfig{
		NodeID: a.id, BindAddr: "127.0.0.1", Key: s.first.GetGossipKey(), AcceptKeys: s.first.GetGossipAcceptKeys(),
		Role: "worker", Logger: testLogger("agent-" + a.id[:6]),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	if err := g.Start(ctx); err != nil {
		t.Fatal(err)
	}
	a.g = g
	t.Cleanup(func() { cancel(); g.Shutdown() })
	if _, err := g.Join(ctx, s.first.GetGossipPeers()); err != nil {
		t.Fatalf("gossip join: %v", err)
	}
	go a.record()
	go a.follow(s)
	go heartbeat(ctx, tm.m.Addr(), creds, s.first.GetSessionId())
	return a
}

// follow applies the keys each session message carries until it ends.
func (a *gossipAgent) follow(s *nodeSession) {
	for {
		select {
		case m := <-s.msgs:
			if len(m.GetGossipKey()) > 0 {
				a.g.SetKeys(m.GetGossipKey(), m.GetGossipAcceptKeys())
			}
		case err := <-s.ended:
			a.ended <- err
			return
		}
	}
}

func (a *gossipAgent) record() {
	for e := range a.g.Events() {
		if e.Kind == discovery.EventDead || e.Kind == discovery.EventLeave {
			a.mu.Lock()
			a.dead = append(a.dead, e.NodeID+" "+e.Kind.String())
			a.mu.Unlock()
		}
	}
}

// sawDead lists the dead or leave events this agent's member saw about
// node.
func (a *gossipAgent) sawDead(node string) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, d := range a.dead {
		if strings.HasPrefix(d, node+" ") {
			out = append(out, d)
		}
	}
	return out
}

// heartbeat keeps a hand-driven session alive.
func heartbeat(ctx context.Context, addr string, creds *ca.Credentials, sid string) {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds.ClientConfig())))
	if err != nil {
		return
	}
	defer conn.Close()
	client := pb.NewDispatcherClient(conn)
	for ctx.Err() == nil {
		if _, err := client.Heartbeat(ctx, &pb.HeartbeatRequest{SessionId: sid}); err != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// gossipManager starts one manager gossiping on a free port. Rotation
// steps are spaced by heartbeat periods, and sessions carry new keys at
// the next period.
func gossipManager(t *testing.T, rotateEvery, heartbeat time.Duration) *testManager {
	t.Helper()
	tm := newTestManager(t, "m0")
	_, port, _ := net.SplitHostPort(freeAddr(t))
	tm.cfg.GossipPort, _ = strconv.Atoi(port)
	tm.cfg.HeartbeatPeriod = heartbeat
	tm.cfg.GossipKeyRotation = rotateEvery
	tm.mustStart()
	await.True(t, settle, func() bool { return tm.m.gossip.peers() != nil }, "the manager gossips")
	return tm
}

// blips watches the manager's member until stop, and reports every time
// it saw one of the live agents not alive.
func blips(tm *testManager, live []*gossipAgent, stop <-chan struct{}) <-chan []string {
	out := make(chan []string, 1)
	go func() {
		var seen []string
		for {
			for _, mb := range tm.m.gossip.g.Members() {
				for _, a := range live {
					if mb.NodeID == a.id && mb.State != discovery.MemberAlive {
						seen = append(seen, fmt.Sprintf("%s %s", a.id, mb.State))
					}
				}
			}
			select {
			case <-stop:
				out <- seen
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return out
}

// rotatedFrom waits until the manager's keys are one key, not old, and
// returns it.
func rotatedFrom(t *testing.T, tm *testManager, old []byte) []byte {
	t.Helper()
	var key []byte
	await.NoError(t, 2*settle, func() error {
		primary, accept := tm.m.gossipKeys()
		if bytes.Equal(primary, old) || len(accept) > 0 {
			return fmt.Errorf("primary changed: %v, %d other keys accepted", !bytes.Equal(primary, old), len(accept))
		}
		key = primary
		return nil
	}, "the gossip key rotates")
	return key
}

// TestRemovalRotatesTheGossipKey: removing a node rotates the gossip key:
// its old key no longer joins gossip, while a live node takes each step
// through its session and is never seen dead; clients never see the keys.
// Sessions run at the default heartbeat period (1 s), slower than gossip
// takes to declare a member dead (~0.7 s): steps that did not wait for
// sessions to carry them would show here as a dead manager.
func TestRemovalRotatesTheGossipKey(t *testing.T) {
	tm := gossipManager(t, 0, dispatcher.DefaultHeartbeatPeriod)
	ctx := ctxFor(t, 3*settle)
	gone := startGossipAgent(t, tm, workerCreds(t, tm))
	live := startGossipAgent(t, tm, workerCreds(t, tm))
	await.True(t, settle, func() bool {
		return tm.m.gossip.g.IsAlive(gone.id) && tm.m.gossip.g.IsAlive(live.id) && live.g.IsAlive(tm.m.NodeID())
	}, "the manager and both agents gossip")
	old, _ := tm.m.gossipKeys()
	stop := make(chan struct{})
	seen := blips(tm, []*gossipAgent{live}, stop)

	if _, err := tm.control().RemoveNode(ctx, &pb.RemoveNodeRequest{NodeId: gone.id, Force: true}); err != nil {
		t.Fatal(err)
	}
	key := rotatedFrom(t, tm, old)
	await.True(t, settle, func() bool {
		p, acc := live.g.Keys()
		return bytes.Equal(p, key) && len(acc) == 0
	}, "the live agent's session delivers the new key and drops the old")
	// The new key carries gossip: the live agent is heard, and hears.
	if err := live.g.SetMeta(ctx, map[string]string{"after": "rotation"}); err != nil {
		t.Fatal(err)
	}
	await.True(t, settle, func() bool {
		for _, mb := range tm.m.gossip.g.Members() {
			if mb.NodeID == live.id {
				return mb.Meta["after"] == "rotation"
			}
		}
		return false
	}, "the manager hears the live agent under the new key")
	close(stop)
	if s := <-seen; len(s) > 0 {
		t.Fatalf("the manager saw the live agent %v during the rotation", s)
	}
	if d := live.sawDead(tm.m.NodeID()); len(d) > 0 {
		t.Fatalf("the live agent saw %v during the rotation", d)
	}

	// The removed node's key no longer joins.
	stale, err := discovery.NewGossip(discovery.GossipConfig{NodeID: "stale", BindAddr: "127.0.0.1", Key: old, Logger: testLogger("stale")})
	if err != nil {
		t.Fatal(err)
	}
	if err := stale.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer stale.Shutdown()
	if _, err := stale.Join(ctx, []string{tm.m.gossip.g.Addr()}); err == nil {
		t.Fatal("a member with the removed node's key joined gossip")
	}
	// Clients see neither key nor rotation.
	cl, err := tm.control().GetCluster(ctx, &pb.GetClusterRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := cl.GetCluster(); len(c.GetGossipKey()) > 0 || c.GetGossipRotation() != nil {
		t.Fatal("GetCluster shows the gossip keys")
	}
}

// TestGossipKeyRotatesPeriodically: with no removal the key still rotates
// every period (12 h by default; 3 s here), and a live agent follows every
// rotation without being seen dead.
func TestGossipKeyRotatesPeriodically(t *testing.T) {
	// A rotation's steps take 2.4 s here; the next falls due 3 s after it began.
	tm := gossipManager(t, 3*time.Second, 200*time.Millisecond)
	live := startGossipAgent(t, tm, workerCreds(t, tm))
	await.True(t, settle, func() bool { return tm.m.gossip.g.IsAlive(live.id) }, "the agent gossips")
	stop := make(chan struct{})
	seen := blips(tm, []*gossipAgent{live}, stop)
	key, _ := tm.m.gossipKeys()
	for range 2 {
		key = rotatedFrom(t, tm, key)
	}
	await.True(t, settle, func() bool {
		primary, accept := tm.m.gossipKeys()
		p, _ := live.g.Keys()
		return bytes.Equal(p, primary) || len(accept) > 0 && bytes.Equal(p, accept[0])
	}, "the agent follows the rotations")
	close(stop)
	if s := <-seen; len(s) > 0 {
		t.Fatalf("the manager saw the live agent %v across rotations", s)
	}
	if d := live.sawDead(tm.m.NodeID()); len(d) > 0 {
		t.Fatalf("the live agent saw %v across rotations", d)
	}
	select {
	case err := <-live.ended:
		t.Fatalf("the live agent's session ended: %v", err)
	default:
	}
}

func TestNextKeyStep(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const every = 12 * time.Hour
	rot := func(next, prev string, made time.Time, removed uint64) *pb.Cluster {
		return &pb.Cluster{GossipKey: []byte("k"), GossipRotation: &pb.GossipKeyRotation{
			Next: []byte(next), Previous: []byte(prev), CreatedAt: timestamppb.New(made), RemovedIndex: removed,
		}}
	}
	for _, tc := range []struct {
		name    string
		c       *pb.Cluster
		removal uint64
		now     time.Time
		want    keyStep
		due     time.Time
	}{
		{"fresh key", rot("", "", t0, 0), 0, t0.Add(time.Hour), keyWait, t0.Add(every)},
		{"a period old", rot("", "", t0, 0), 0, t0.Add(every), keyInstall, t0.Add(every)},
		{"a node removed since the key was made", rot("", "", t0, 5), 9, t0.Add(time.Minute), keyInstall, t0.Add(time.Minute)},
		{"a removal the key already accounts for", rot("", "", t0, 9), 9, t0.Add(time.Minute), keyWait, t0.Add(every)},
		{"installed: promote", rot("n", "", t0, 0), 0, t0, keyPromote, t0},
		{"promoted: drop", rot("", "p", t0, 0), 0, t0, keyDrop, t0},
		{"a removal during a rotation waits for its end", rot("n", "", t0, 0), 9, t0, keyPromote, t0},
		{"an old cluster without rotation state", &pb.Cluster{GossipKey: []byte("k"), Meta: &pb.Meta{CreatedAt: timestamppb.New(t0)}}, 0, t0.Add(every + time.Second), keyInstall, t0.Add(every + time.Second)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			step, due, _ := nextKeyStep(tc.c, tc.removal, tc.now, every)
			if step != tc.want || !due.Equal(tc.due) {
				t.Fatalf("got %s due %s, want %s due %s", step, due, tc.want, tc.due)
			}
		})
	}
	// Later steps wait settle after this manager first saw the step before.
	var p pacer
	c := rot("n", "", t0, 0)
	if step, due, _ := p.pace(c, 0, t0, every, time.Second); step != keyWait || !due.Equal(t0.Add(time.Second)) {
		t.Fatalf("right after an install: %s due %s, want wait until settled", step, due)
	}
	if step, _, _ := p.pace(c, 0, t0.Add(time.Second), every, time.Second); step != keyPromote {
		t.Fatalf("settled: %s, want promote", step)
	}
}
