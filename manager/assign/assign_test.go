package assign

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
	"berth/scheduler"
	"berth/store"
)

func TestPendingTasksAreAssignedAndSpread(t *testing.T) {
	t.Parallel()
	s := newStore()
	// Some tasks wait before the loop starts (the snapshot), more come later
	// (the watch).
	early := tasks("web", 3)
	create(t, s, []*pb.Node{node("a"), node("b"), node("c")}, early)
	start(t, s, Config{})
	late := []*pb.Task{task("web", 4), task("web", 5), task("web", 6)}
	create(t, s, nil, late)

	got := waitAssigned(t, s, ids(append(early, late...))...)
	if want := map[string]int{"a": 2, "b": 2, "c": 2}; !maps.Equal(perNode(got), want) {
		t.Errorf("tasks per node = %v, want %v", perNode(got), want)
	}
	for id, tk := range got {
		st := tk.GetStatus()
		if st.GetMessage() != "assigned" || st.GetErr() != "" || !st.GetTimestamp().AsTime().Equal(clock) {
			t.Errorf("task %s status = %v, want message \"assigned\", no error, timestamp %s", id, st, clock)
		}
	}
}

func TestMemoryReservationsAreRespected(t *testing.T) {
	t.Parallel()
	s := newStore()
	// a already runs a task holding 6 of its 8 GiB; b is empty.
	running := task("db", 1, runningOn("a"), reserveMemory(6*gib))
	pending := tasks("web", 5, reserveMemory(3*gib))
	create(t, s, []*pb.Node{node("a"), node("b")}, append([]*pb.Task{running}, pending...))
	start(t, s, Config{})

	// b takes two (6 of 8 GiB); a has 2 GiB left, too little for a third.
	got := waitAssigned(t, s, "web.1", "web.2")
	if pn := perNode(got); pn["b"] != 2 {
		t.Errorf("tasks per node = %v, want both on b", pn)
	}
	const reason = "no suitable node (insufficient memory on 2 nodes)"
	for _, id := range []string{"web.3", "web.4", "web.5"} {
		if tk := waitReason(t, s, id, reason); tk.NodeId != "" {
			t.Errorf("unplaced task %s has node %q", id, tk.NodeId)
		}
	}
}

func TestUnmetConstraintKeepsTaskPendingWithReason(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a", withLabel("zone", "a")), node("b", withLabel("zone", "b"))},
		[]*pb.Task{task("db", 1, constraints("node.labels.zone==c"))})
	start(t, s, Config{})

	tk := waitReason(t, s, "db.1", "no suitable node (constraint node.labels.zone==c not met on 2 nodes)")
	version := tk.GetMeta().GetVersion()

	// Another task gets placed in a round that reconsiders db.1 too; its
	// reason is the same, so it is not written again.
	create(t, s, nil, []*pb.Task{task("web", 1)})
	waitAssigned(t, s, "web.1")
	if v := getTask(s, "db.1").GetMeta().GetVersion(); v != version {
		t.Errorf("db.1 written again (version %d → %d) though its reason did not change", version, v)
	}

	// A node that changes the reason gets it rewritten; one that meets the
	// constraint gets the task.
	create(t, s, []*pb.Node{node("d", withLabel("zone", "d"))}, nil)
	waitReason(t, s, "db.1", "no suitable node (constraint node.labels.zone==c not met on 3 nodes)")
	updateNode(t, s, "d", func(n *pb.Node) { n.Spec.Annotations.Labels["zone"] = "c" })
	if got := waitAssigned(t, s, "db.1"); got["db.1"].NodeId != "d" {
		t.Errorf("db.1 went to %q, want d", got["db.1"].NodeId)
	}
}

func TestNodeThatBecomesReadyGetsPendingTask(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a", withState(pb.NodeStatus_STATE_DOWN))}, []*pb.Task{task("web", 1)})
	start(t, s, Config{})

	waitReason(t, s, "web.1", "no suitable node (node not ready on 1 node)")
	updateNode(t, s, "a", func(n *pb.Node) { n.Status.State = pb.NodeStatus_STATE_READY })
	if got := waitAssigned(t, s, "web.1"); got["web.1"].NodeId != "a" {
		t.Errorf("web.1 went to %q, want a", got["web.1"].NodeId)
	}
}

func TestPausedAndDrainedNodesGetNothingNew(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{
		node("p", withAvail(pb.NodeSpec_AVAILABILITY_PAUSE)),
		node("d", withAvail(pb.NodeSpec_AVAILABILITY_DRAIN)),
	}, []*pb.Task{task("web", 1)})
	start(t, s, Config{})

	waitReason(t, s, "web.1", "no suitable node (node paused on 1 node; node drained on 1 node)")

	create(t, s, []*pb.Node{node("z")}, tasks("api", 4))
	got := waitAssigned(t, s, "web.1", "api.1", "api.2", "api.3", "api.4")
	if pn := perNode(got); pn["z"] != 5 {
		t.Errorf("tasks per node = %v, want all 5 on the only active node z", pn)
	}

	// Draining the last active node leaves new tasks pending.
	updateNode(t, s, "z", func(n *pb.Node) { n.Spec.Availability = pb.NodeSpec_AVAILABILITY_DRAIN })
	create(t, s, nil, []*pb.Task{task("web", 2)})
	waitReason(t, s, "web.2", "no suitable node (node paused on 1 node; node drained on 2 nodes)")
}

func TestTaskLeavingNodeFreesItsReservation(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a")}, []*pb.Task{
		task("db", 1, runningOn("a"), reserveMemory(6*gib)),
		task("web", 1, reserveMemory(4*gib)),
	})
	start(t, s, Config{})

	waitReason(t, s, "web.1", "no suitable node (insufficient memory on 1 node)")
	updateTask(t, s, "db.1", func(tk *pb.Task) { tk.Status.State = pb.TaskState_TASK_STATE_COMPLETE })
	if got := waitAssigned(t, s, "web.1"); got["web.1"].NodeId != "a" {
		t.Errorf("web.1 went to %q, want a", got["web.1"].NodeId)
	}
}

// TestStoppingTaskHoldsItsNodeUntilItStops: a task managers want stopped
// still holds its reservation (and its host ports) while it runs — the
// agent drains and stops it first — so nothing takes its place until it has
// stopped, as swarmkit frees a task's resources only once it is past
// running. Before, the room was given away at the desired-state change and
// two tasks could publish the same host port on one node.
func TestStoppingTaskHoldsItsNodeUntilItStops(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a")}, []*pb.Task{
		task("db", 1, runningOn("a"), reserveMemory(6*gib)),
		task("web", 1, reserveMemory(4*gib)),
	})
	start(t, s, Config{})
	waitReason(t, s, "web.1", "no suitable node (insufficient memory on 1 node)")

	updateTask(t, s, "db.1", func(tk *pb.Task) { tk.DesiredState = pb.TaskState_TASK_STATE_SHUTDOWN })
	// A node too small for web makes a round that sees db.1 stopping.
	create(t, s, []*pb.Node{node("b", withMemory(2*gib))}, nil)
	waitReason(t, s, "web.1", "no suitable node (insufficient memory on 2 nodes)")

	updateTask(t, s, "db.1", func(tk *pb.Task) { tk.Status.State = pb.TaskState_TASK_STATE_SHUTDOWN })
	if got := waitAssigned(t, s, "web.1"); got["web.1"].NodeId != "a" {
		t.Errorf("web.1 went to %q, want a", got["web.1"].NodeId)
	}
}

func TestPinnedTaskGoesOnlyToItsNode(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a"), node("b", withState(pb.NodeStatus_STATE_DOWN))},
		[]*pb.Task{task("mon", 0, pinnedTo("b"))})
	start(t, s, Config{})

	waitReason(t, s, "mon.0", "no suitable node (node not ready on 1 node)")
	updateNode(t, s, "b", func(n *pb.Node) { n.Status.State = pb.NodeStatus_STATE_READY })
	if got := waitAssigned(t, s, "mon.0"); got["mon.0"].NodeId != "b" {
		t.Errorf("mon.0 went to %q, want b", got["mon.0"].NodeId)
	}
}

func TestBinpackStrategyFillsOneNodeFirst(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a"), node("b"), node("c")}, tasks("web", 3, reserveMemory(gib)))
	start(t, s, Config{Strategy: pb.Placement_STRATEGY_BINPACK})

	got := waitAssigned(t, s, "web.1", "web.2", "web.3")
	if pn := perNode(got); len(pn) != 1 {
		t.Errorf("tasks per node = %v, want all on one node", pn)
	}
}

func TestThousandTasksCommitInFewWrites(t *testing.T) {
	t.Parallel()
	s := newStore()
	var nodes []*pb.Node
	for i := range 20 {
		nodes = append(nodes, node(string(rune('a'+i))))
	}
	create(t, s, nodes, nil)
	start(t, s, Config{BatchDelay: 50 * time.Millisecond})

	batch := tasks("web", 1000, reserveMemory(gib/8))
	create(t, s, nil, batch) // one entry: they arrive together
	before := s.Index()
	got := waitAssigned(t, s, ids(batch)...)
	for n, c := range perNode(got) {
		if c != 50 {
			t.Errorf("node %s has %d tasks, want 50", n, c)
		}
	}
	// The store bounds an entry by bytes (store.DefaultMaxBatchBytes, a
	// few thousand tasks), so one round is one entry or two (a straggler
	// event may cost a small second round); a write per task would be 1,000.
	if writes := s.Index() - before; writes > 3 {
		t.Errorf("1,000 assignments took %d store writes, want at most 3", writes)
	}
}

// TestWriteRechecksTheChosenNode changes the chosen node between the
// decision and the write: the write must refuse it, and the task go
// elsewhere in a later round, never onto the full node.
func TestWriteRechecksTheChosenNode(t *testing.T) {
	t.Parallel()

	t.Run("another task took the room", func(t *testing.T) {
		t.Parallel()
		s := newStore()
		create(t, s, []*pb.Node{node("a"), node("b")}, []*pb.Task{task("web", 1, reserveMemory(6*gib))})
		var chosen atomic.Value
		start(t, s, Config{}, func(a *Assigner) {
			a.beforeCommit = onFirst(func(res scheduler.Result) {
				n := res.Assignments[0].NodeID
				chosen.Store(n)
				create(t, s, nil, []*pb.Task{task("intruder", 1, reserveMemory(6*gib),
					func(tk *pb.Task) { tk.NodeId, tk.Status.State = n, pb.TaskState_TASK_STATE_ASSIGNED })})
			})
		})
		got := waitAssigned(t, s, "web.1")
		if c, ok := chosen.Load().(string); !ok || got["web.1"].NodeId == c {
			t.Errorf("web.1 on %q; first choice %v was full at write time", got["web.1"].NodeId, chosen.Load())
		}
	})

	t.Run("the node shrank", func(t *testing.T) {
		t.Parallel()
		s := newStore()
		create(t, s, []*pb.Node{node("a")}, []*pb.Task{task("web", 1, reserveMemory(6*gib))})
		start(t, s, Config{}, func(a *Assigner) {
			a.beforeCommit = onFirst(func(res scheduler.Result) {
				if len(res.Assignments) != 1 {
					t.Errorf("first round assigned %d tasks, want 1", len(res.Assignments))
				}
				updateNode(t, s, "a", withMemory(4*gib))
			})
		})
		tk := waitReason(t, s, "web.1", "no suitable node (insufficient memory on 1 node)")
		if tk.NodeId != "" {
			t.Errorf("web.1 is on %q, want no node", tk.NodeId)
		}
	})
}

// onFirst runs f on the first call only.
func onFirst(f func(scheduler.Result)) func(scheduler.Result) {
	var done atomic.Bool
	return func(res scheduler.Result) {
		if done.CompareAndSwap(false, true) {
			f(res)
		}
	}
}

func TestRunStopsWithItsContextAndResumesFromTheStore(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a")}, nil)
	a, err := New(Config{Store: s, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	create(t, s, nil, []*pb.Task{task("web", 1)})
	waitAssigned(t, s, "web.1")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}

	// Work that arrives while nobody leads is picked up by the next term.
	create(t, s, nil, []*pb.Task{task("web", 2)})
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- a.Run(ctx) }()
	waitAssigned(t, s, "web.2")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("second Run = %v, want nil", err)
	}
}

func TestRestoredStoreIsFollowedFromItsNewState(t *testing.T) {
	t.Parallel()
	s := newStore()
	create(t, s, []*pb.Node{node("a")}, nil)
	start(t, s, Config{})
	create(t, s, nil, []*pb.Task{task("web", 1)})
	waitAssigned(t, s, "web.1")

	// The state is replaced wholesale (a follower catching up from a Raft
	// snapshot): the watch ends and the loop starts over from the new state.
	other := newStore()
	create(t, other, []*pb.Node{node("b")}, []*pb.Task{task("api", 1), task("api", 2)})
	var buf bytes.Buffer
	if _, err := other.Snapshot().WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(&buf); err != nil {
		t.Fatal(err)
	}
	if pn := perNode(waitAssigned(t, s, "api.1", "api.2")); pn["b"] != 2 {
		t.Errorf("tasks per node = %v, want both on b", pn)
	}
}

func TestRunReturnsWhenTheStoreRefusesWrites(t *testing.T) {
	t.Parallel()
	p := &localProposer{}
	s := store.New(p, store.WithClock(now))
	p.s = s
	create(t, s, []*pb.Node{node("a")}, []*pb.Task{task("web", 1)})
	p.refuse.Store(true) // leadership is lost

	a, err := New(Config{Store: s})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background()) }()
	var runErr error
	await.True(t, wait, func() bool {
		select {
		case runErr = <-done:
			return true
		default:
			return false
		}
	}, "Run did not return after the store refused its write")
	if !errors.Is(runErr, store.ErrNotLeader) {
		t.Errorf("Run = %v, want an error wrapping %q", runErr, store.ErrNotLeader)
	}
}

// localProposer applies batches to its store, as a one-member Raft would,
// until refuse is set; then it answers as a deposed leader.
type localProposer struct {
	s      *store.MemoryStore
	mu     sync.Mutex
	refuse atomic.Bool
}

func (p *localProposer) Propose(_ context.Context, b *pb.StoreBatch) (uint64, error) {
	if p.refuse.Load() {
		return 0, fmt.Errorf("propose: %w", store.ErrNotLeader)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	index := p.s.Index() + 1
	return index, p.s.Apply(index, b)
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no store", Config{}, "Config.Store is nil"},
		{"negative delay", Config{Store: newStore(), BatchDelay: -time.Second}, "Config.BatchDelay is -1s"},
		{"unknown strategy", Config{Store: newStore(), Strategy: 7}, "Config.Strategy 7 is unknown"},
	} {
		_, err := New(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// A task without addresses waits for the allocator: the loop neither
// places it nor writes a reason on it.
func TestTaskWithoutAddressesIsNotPlaced(t *testing.T) {
	t.Parallel()
	st := newStore()
	bare := task("bare", 1, func(t *pb.Task) { t.Networks = nil })
	ready := task("ready", 1)
	create(t, st, []*pb.Node{node("n1")}, []*pb.Task{bare, ready})
	start(t, st, Config{})
	waitAssigned(t, st, ready.GetId())
	got := getTask(st, bare.GetId())
	if got.GetStatus().GetState() != pb.TaskState_TASK_STATE_PENDING || got.GetNodeId() != "" || got.GetStatus().GetMessage() != "pending" {
		t.Fatalf("a task without addresses was touched: %v", got.GetStatus())
	}
}
