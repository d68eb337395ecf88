package assign_test

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/deploy"
	"berth/internal/await"
	"berth/manager/assign"
	"berth/overlay/allocator"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// This file runs the leader's real loops together at scale: the deploy
// orchestrator creates tasks for services, the assigner places them with
// the scheduler, and fake agents (standing in for agents reporting through
// the dispatcher) start what is assigned to them. Then agents die, their
// nodes go down, and the loops must bring every service back to its count
// on the nodes left, while no committed state ever holds two live tasks in
// one slot.

const (
	running  = pb.TaskState_TASK_STATE_RUNNING
	assigned = pb.TaskState_TASK_STATE_ASSIGNED
	shutdown = pb.TaskState_TASK_STATE_SHUTDOWN

	cpu = int64(1e9) // one core in nano CPUs
	mib = int64(1 << 20)

	// phaseTimeout bounds each phase (converge, recover) of a scale run.
	phaseTimeout = 120 * time.Second

	globalID = "svc-edge"
	// fenceID is a node the run writes after the loops stopped: the
	// checker has seen every change once it sees the fence.
	fenceID = "zz-fence"
)

// scaleSize is the shape of a run: nodes, replicated services of replicas
// tasks each, and how many nodes (the first ones) lose their agent. Every
// tenth node is an edge node and runs the global service.
type scaleSize struct {
	nodes, services, replicas, down int
}

// full is the size: 1,000 nodes, 10,000 replicated tasks (plus a
// global task on each of the 100 edge nodes), 100 agents killed.
var full = scaleSize{nodes: 1000, services: 100, replicas: 100, down: 100}

func (s scaleSize) nodeID(i int) string { return fmt.Sprintf("node-%04d", i) }

// edge reports whether node i is an edge node (label edge=true).
func (s scaleSize) edge(i int) bool { return i%10 == 7 }

// zone is node i's zone label.
func (s scaleSize) zone(i int) string { return fmt.Sprintf("z%d", i%10) }

// want is the number of tasks each service must run once the first down
// nodes are down.
func (s scaleSize) want(down int) map[string]int {
	w := map[string]int{}
	for i := range s.services {
		w[serviceID(i)] = s.replicas
	}
	for i := down; i < s.nodes; i++ {
		if s.edge(i) {
			w[globalID]++
		}
	}
	return w
}

func total(want map[string]int) int {
	n := 0
	for _, c := range want {
		n += c
	}
	return n
}

func TestScaleRealLoops(t *testing.T) {
	size := full
	if testing.Short() {
		size = scaleSize{nodes: 200, services: 20, replicas: 100, down: 20}
	}
	converge, recover := runScale(t, size)
	t.Logf("%d nodes, %d tasks (race=%v): converged in %v; %d agents killed, %d tasks running again in %v",
		size.nodes, total(size.want(0)), raceOn(), converge.Round(time.Millisecond),
		size.down, total(size.want(size.down)), recover.Round(time.Millisecond))
}

// BenchmarkScaleRealLoops runs the full-size scenario; the figures are the
// seconds from services created to every task running, and from 100 nodes
// down to every task running again.
func BenchmarkScaleRealLoops(b *testing.B) {
	for b.Loop() {
		converge, recover := runScale(b, full)
		b.ReportMetric(converge.Seconds(), "converge-s")
		b.ReportMetric(recover.Seconds(), "recover-s")
	}
}

// raceOn reports whether the test binary was built with -race.
func raceOn() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// runScale creates the nodes, starts the orchestrator, the assigner, the
// fake agents and the slot checker, creates the services and waits until
// every task runs; then kills the first size.down agents, marks their
// nodes down and waits until every task runs again.
// scaleCluster is the ID of the Cluster object whose pool the allocator
// carves the default network from.
const scaleCluster = "scale-cluster"

func runScale(tb testing.TB, size scaleSize) (converge, recover time.Duration) {
	// The changelog is large enough that no watcher, the checker least of
	// all (it must see every change), falls behind a round of writes.
	st := store.New(nil, store.WithChangelogSize(8*size.services*size.replicas+20000))
	chk := newChecker()
	chkCtx, stopChecker := context.WithCancel(context.Background())
	defer stopChecker()
	chkDone := make(chan error, 1)
	w, err := st.Watch(chkCtx, 0)
	if err != nil {
		tb.Fatal(err)
	}
	go func() { chkDone <- chk.run(w) }()

	nodes := make([]string, size.nodes)
	mustBatch(tb, st, func(b *store.Batch) error {
		if err := b.Update(func(tx store.Tx) error { return tx.CreateCluster(&pb.Cluster{Id: scaleCluster}) }); err != nil {
			return err
		}
		for i := range nodes {
			nodes[i] = size.nodeID(i)
			n := scaleNode(size, i)
			if err := b.Update(func(tx store.Tx) error { return tx.CreateNode(n) }); err != nil {
				return err
			}
		}
		return nil
	})

	orch, err := deploy.New(deploy.Config{Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	asg, err := assign.New(assign.Config{Store: st})
	if err != nil {
		tb.Fatal(err)
	}
	alloc, err := allocator.New(allocator.Config{Store: st, ClusterID: scaleCluster})
	if err != nil {
		tb.Fatal(err)
	}
	agents := newFleet()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return orch.Run(gctx) })
	g.Go(func() error { return alloc.Run(gctx) })
	g.Go(func() error { return asg.Run(gctx) })
	g.Go(func() error { return agents.run(gctx, st) })
	defer func() {
		cancel()
		if err := g.Wait(); err != nil {
			tb.Errorf("loops: %v", err)
		}
		// Nothing writes any more: fence the changes and let the checker
		// finish them.
		if err := st.Update(context.Background(), func(tx store.Tx) error {
			return tx.CreateNode(&pb.Node{Id: fenceID})
		}); err != nil {
			tb.Errorf("write fence: %v", err)
		}
		select {
		case err := <-chkDone:
			if err != nil {
				tb.Error(err)
			}
		case <-time.After(phaseTimeout):
			tb.Errorf("slot checker did not reach the fence in %v", phaseTimeout)
		}
	}()

	begin := time.Now()
	mustBatch(tb, st, func(b *store.Batch) error {
		for i := range size.services {
			s := &pb.Service{Id: serviceID(i), Spec: replicatedSpec(i, size.replicas), SpecVersion: 1}
			if err := b.Update(func(tx store.Tx) error { return tx.CreateService(s) }); err != nil {
				return err
			}
		}
		s := &pb.Service{Id: globalID, Spec: globalSpec(), SpecVersion: 1}
		return b.Update(func(tx store.Tx) error { return tx.CreateService(s) })
	})
	awaitConverged(tb, st, size, nil)
	converge = time.Since(begin)

	// The agents die first; the dispatcher notices the missing heartbeats
	// and marks their nodes down.
	killed := map[string]bool{}
	for _, id := range nodes[:size.down] {
		killed[id] = true
	}
	if err := agents.kill(gctx, nodes[:size.down]); err != nil {
		tb.Fatal(err)
	}
	begin = time.Now()
	mustBatch(tb, st, func(b *store.Batch) error {
		for _, id := range nodes[:size.down] {
			err := b.Update(func(tx store.Tx) error {
				n := proto.Clone(tx.GetNode(id)).(*pb.Node)
				n.Status.State = pb.NodeStatus_STATE_DOWN
				return tx.UpdateNode(n)
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	awaitConverged(tb, st, size, killed)
	recover = time.Since(begin)
	checkPlacement(tb, st)
	return converge, recover
}

func mustBatch(tb testing.TB, st *store.MemoryStore, cb func(*store.Batch) error) {
	tb.Helper()
	if err := st.Batch(context.Background(), cb); err != nil {
		tb.Fatal(err)
	}
}

// scaleNode is node i: ready, active, 4 CPUs and 8 GiB, labelled with its
// zone and, for edge nodes, edge=true.
func scaleNode(size scaleSize, i int) *pb.Node {
	labels := map[string]string{"zone": size.zone(i)}
	if size.edge(i) {
		labels["edge"] = "true"
	}
	id := size.nodeID(i)
	return &pb.Node{
		Id:     id,
		Spec:   &pb.NodeSpec{Annotations: &pb.Annotations{Name: id, Labels: labels}},
		Status: &pb.NodeStatus{State: pb.NodeStatus_STATE_READY},
		Description: &pb.NodeDescription{
			Hostname:  "host-" + id,
			Platform:  &pb.Platform{Os: "linux", Architecture: "amd64"},
			Resources: &pb.ResourceSet{NanoCpus: 4 * cpu, MemoryBytes: 8192 * mib},
		},
	}
}

func serviceID(i int) string { return fmt.Sprintf("svc-%03d", i) }

// replicatedSpec is service i's spec. Service 0 reserves half a node per
// task, every fourth from 1 on a quarter CPU; service 2 runs only in zone
// z3, service 3 anywhere but zone z0.
func replicatedSpec(i, replicas int) *pb.ServiceSpec {
	spec := &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: fmt.Sprintf("web-%03d", i)},
		Replicas:    proto.Int64(int64(replicas)),
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{Image: "busybox"},
			Resources: &pb.Resources{},
			Placement: &pb.Placement{},
		},
	}
	switch {
	case i == 0:
		spec.Task.Resources.Reservations = &pb.ResourceSet{NanoCpus: 2 * cpu, MemoryBytes: 4096 * mib}
	case i%4 == 1:
		spec.Task.Resources.Reservations = &pb.ResourceSet{NanoCpus: cpu / 4, MemoryBytes: 256 * mib}
	case i == 2:
		spec.Task.Placement.Constraints = []string{"node.labels.zone==z3"}
	case i == 3:
		spec.Task.Placement.Constraints = []string{"node.labels.zone!=z0"}
	}
	return spec
}

// globalSpec runs one task on every edge node.
func globalSpec() *pb.ServiceSpec {
	return &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: "edge-proxy"},
		Mode:        pb.ServiceMode_SERVICE_MODE_GLOBAL,
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{Image: "busybox"},
			Resources: &pb.Resources{Reservations: &pb.ResourceSet{NanoCpus: cpu / 10, MemoryBytes: 64 * mib}},
			Placement: &pb.Placement{Constraints: []string{"node.labels.edge==true"}},
		},
	}
}

// awaitConverged waits until exactly the desired tasks run: every task
// desired running is observed running on a ready node that was not killed,
// each replicated service runs its slots 1..replicas once each, the global
// service once on every edge node left, and nothing else is desired
// running.
func awaitConverged(tb testing.TB, st *store.MemoryStore, size scaleSize, killed map[string]bool) {
	tb.Helper()
	want := size.want(len(killed))
	// A full scan costs more than await's poll interval under -race: scan
	// only when the store moved and a quarter second has passed.
	var last time.Time
	var lastIndex uint64
	err := errors.New("not checked yet")
	await.NoError(tb, phaseTimeout, func() error {
		if time.Since(last) < 250*time.Millisecond || st.Index() == lastIndex {
			return err
		}
		last, lastIndex = time.Now(), st.Index()
		st.View(func(tx store.ReadTx) { err = converged(tx, want, killed) })
		return err
	}, "%d tasks running", total(want))
}

// converged checks one view against want; see awaitConverged.
func converged(tx store.ReadTx, want map[string]int, killed map[string]bool) error {
	tasks, err := tx.FindTasks(store.ByDesiredState(running))
	if err != nil {
		return err
	}
	perService := map[string]int{}
	// held is what each service holds: slots, or nodes for the global one.
	held := map[string]map[string]bool{}
	for _, t := range tasks {
		n := tx.GetNode(t.GetNodeId())
		if t.GetStatus().GetState() != running || n.GetStatus().GetState() != pb.NodeStatus_STATE_READY || killed[n.GetId()] {
			return fmt.Errorf("task %s of %s is %v on node %q (%v)", t.GetId(), t.GetServiceId(),
				t.GetStatus().GetState(), t.GetNodeId(), n.GetStatus().GetState())
		}
		svc := t.GetServiceId()
		perService[svc]++
		key := fmt.Sprint("slot ", t.GetSlot())
		switch {
		case svc == globalID && n.GetSpec().GetAnnotations().GetLabels()["edge"] != "true":
			return fmt.Errorf("global task %s runs on %s, which is no edge node", t.GetId(), n.GetId())
		case svc == globalID:
			key = "node " + n.GetId()
		case t.GetSlot() < 1 || t.GetSlot() > uint64(want[svc]):
			return fmt.Errorf("task %s of %s runs slot %d, outside 1..%d", t.GetId(), svc, t.GetSlot(), want[svc])
		}
		if held[svc] == nil {
			held[svc] = map[string]bool{}
		}
		if held[svc][key] {
			return fmt.Errorf("%s of %s has two tasks desired running", key, svc)
		}
		held[svc][key] = true
	}
	for svc, n := range want {
		if perService[svc] != n {
			return fmt.Errorf("service %s runs %d tasks, want %d", svc, perService[svc], n)
		}
	}
	if len(perService) != len(want) {
		return fmt.Errorf("%d services run tasks, want %d", len(perService), len(want))
	}
	return nil
}

// checkPlacement checks the converged state the way a user would: no node
// holds more than its resources, and constrained tasks sit on nodes that
// meet their constraints.
func checkPlacement(tb testing.TB, st *store.MemoryStore) {
	tb.Helper()
	st.View(func(tx store.ReadTx) {
		tasks, err := tx.FindTasks(store.ByDesiredState(running))
		if err != nil {
			tb.Fatal(err)
		}
		type held struct{ cpu, mem int64 }
		perNode := map[string]held{}
		for _, t := range tasks {
			r := t.GetSpec().GetResources().GetReservations()
			h := perNode[t.GetNodeId()]
			perNode[t.GetNodeId()] = held{h.cpu + r.GetNanoCpus(), h.mem + r.GetMemoryBytes()}
			zone := tx.GetNode(t.GetNodeId()).GetSpec().GetAnnotations().GetLabels()["zone"]
			if (t.GetServiceId() == serviceID(2) && zone != "z3") || (t.GetServiceId() == serviceID(3) && zone == "z0") {
				tb.Errorf("task %s of %s runs in zone %s against its constraint", t.GetId(), t.GetServiceId(), zone)
			}
		}
		for id, h := range perNode {
			res := tx.GetNode(id).GetDescription().GetResources()
			if h.cpu > res.GetNanoCpus() || h.mem > res.GetMemoryBytes() {
				tb.Errorf("node %s holds tasks reserving %d nano CPUs and %d bytes, more than its %d and %d",
					id, h.cpu, h.mem, res.GetNanoCpus(), res.GetMemoryBytes())
			}
		}
	})
}

// fleet plays the agents of every node, reporting through the dispatcher:
// a task assigned to a node whose agent lives starts running, and a task
// told to shut down stops. Reports go to the store in batches, as the
// dispatcher writes them. A killed agent does nothing any more.
type fleet struct {
	killc chan killRequest
	dead  map[string]bool // owned by run
}

type killRequest struct {
	nodes []string
	done  chan struct{}
}

func newFleet() *fleet {
	return &fleet{killc: make(chan killRequest), dead: map[string]bool{}}
}

// kill stops the agents of nodes; once it returns they write nothing more.
func (f *fleet) kill(ctx context.Context, nodes []string) error {
	req := killRequest{nodes: nodes, done: make(chan struct{})}
	select {
	case f.killc <- req:
	case <-ctx.Done():
		return fmt.Errorf("kill agents: fake agents stopped: %w", ctx.Err())
	}
	<-req.done
	return nil
}

// run reports task progress until ctx ends. A watch that falls behind
// starts over from a fresh view.
func (f *fleet) run(ctx context.Context, st *store.MemoryStore) error {
	for {
		err := f.follow(ctx, st)
		if ctx.Err() != nil {
			return nil
		}
		if !errors.Is(err, store.ErrWatcherLagged) {
			return fmt.Errorf("fake agents: %w", err)
		}
	}
}

func (f *fleet) follow(ctx context.Context, st *store.MemoryStore) error {
	unreported := map[string]bool{}
	w, err := st.ViewAndWatch(ctx, func(tx store.ReadTx) {
		ts, _ := tx.FindTasks(store.All)
		for _, t := range ts {
			f.note(unreported, t)
		}
	}, store.Only[*pb.Task]())
	if err != nil {
		return err
	}
	defer w.Close()
	for {
		if len(unreported) > 0 {
			if err := f.report(ctx, st, unreported); err != nil {
				return err
			}
		}
		select {
		case ev, ok := <-w.Events():
			if !ok {
				return watchEnded(w)
			}
			f.note(unreported, ev.Object.(*pb.Task))
			for drained := false; !drained; {
				select {
				case ev, ok := <-w.Events():
					if !ok {
						return watchEnded(w)
					}
					f.note(unreported, ev.Object.(*pb.Task))
				default:
					drained = true
				}
			}
		case req := <-f.killc:
			for _, n := range req.nodes {
				f.dead[n] = true
			}
			close(req.done)
		case <-ctx.Done():
			return nil
		}
	}
}

func watchEnded(w *store.Watcher) error {
	if err := w.Err(); err != nil {
		return err
	}
	return errors.New("watch closed")
}

// note queues t when its agent has something to report about it.
func (f *fleet) note(unreported map[string]bool, t *pb.Task) {
	if next(t) != 0 && !f.dead[t.GetNodeId()] {
		unreported[t.GetId()] = true
	}
}

// next is the state an agent reports for t, or 0 when it has nothing to
// say: assigned tasks start (the steps between collapse into one report),
// tasks told to stop stop.
func next(t *pb.Task) pb.TaskState {
	s := t.GetStatus().GetState()
	switch {
	case t.GetNodeId() == "" || s < assigned || s > running:
		return 0
	case t.GetDesiredState() > running:
		return shutdown
	case s < running:
		return running
	}
	return 0
}

// report writes the queued reports in one batch, each from the task as it
// is now. A batch that lost a race with another writer is tried again.
func (f *fleet) report(ctx context.Context, st *store.MemoryStore, unreported map[string]bool) error {
	ids := make([]string, 0, len(unreported))
	for id := range unreported {
		ids = append(ids, id)
	}
	clear(unreported)
	err := st.Batch(ctx, func(b *store.Batch) error {
		for _, id := range ids {
			if err := b.Update(func(tx store.Tx) error { return f.step(tx, id) }); err != nil {
				return err
			}
		}
		return nil
	})
	switch {
	case err == nil, ctx.Err() != nil:
		return nil
	case errors.Is(err, store.ErrSequenceConflict):
		for _, id := range ids {
			unreported[id] = true
		}
		return nil
	}
	return fmt.Errorf("report task status: %w", err)
}

// step writes the report for one task, if its agent lives and has one.
func (f *fleet) step(tx store.Tx, id string) error {
	cur := tx.GetTask(id)
	if cur == nil || f.dead[cur.GetNodeId()] {
		return nil
	}
	s := next(cur)
	if s == 0 {
		return nil
	}
	t := proto.Clone(cur).(*pb.Task)
	t.Status = &pb.TaskStatus{State: s, Timestamp: timestamppb.Now(), Message: "reported by the fake agent"}
	return tx.UpdateTask(t)
}

// unit is what holds at most one live task: a slot of a replicated
// service, or a node of a global service.
type unit struct {
	service string
	slot    uint64
	node    string
}

func unitOf(t *pb.Task) unit {
	if t.GetSlot() > 0 {
		return unit{service: t.GetServiceId(), slot: t.GetSlot()}
	}
	return unit{service: t.GetServiceId(), node: t.GetNodeId()}
}

// checker follows every committed change and, at the end of each commit,
// checks the units the commit touched. A unit must never hold two tasks
// that managers want running (desired state running or earlier; a task on
// a down node that managers told to shut down is not one), nor two tasks
// assigned, starting or running on nodes that are not down.
type checker struct {
	tasks  map[unit]map[string]*pb.Task // tasks not deleted, by unit
	down   map[string]bool
	onNode map[string]map[unit]bool // units that had tasks on a node

	touched    map[unit]bool
	commits    int
	violations []string
}

func newChecker() *checker {
	return &checker{
		tasks: map[unit]map[string]*pb.Task{}, down: map[string]bool{},
		onNode: map[string]map[unit]bool{}, touched: map[unit]bool{},
	}
}

// run consumes w until the fence and returns what it found.
func (c *checker) run(w *store.Watcher) error {
	defer w.Close()
	var index uint64
	for ev := range w.Events() {
		if ev.Index != index {
			c.check(index)
			index = ev.Index
		}
		switch o := ev.Object.(type) {
		case *pb.Node:
			if o.GetId() == fenceID {
				return c.result()
			}
			c.node(ev.Kind, o)
		case *pb.Task:
			c.task(ev.Kind, o)
		}
	}
	return fmt.Errorf("slot checker: watch ended before the fence after %d commits: %v", c.commits, w.Err())
}

func (c *checker) node(kind store.EventKind, n *pb.Node) {
	down := kind == store.EventDelete || n.GetStatus().GetState() == pb.NodeStatus_STATE_DOWN
	if c.down[n.GetId()] == down {
		return
	}
	c.down[n.GetId()] = down
	for u := range c.onNode[n.GetId()] {
		c.touched[u] = true
	}
}

func (c *checker) task(kind store.EventKind, t *pb.Task) {
	u := unitOf(t)
	c.touched[u] = true
	if kind == store.EventDelete {
		delete(c.tasks[u], t.GetId())
		return
	}
	if c.tasks[u] == nil {
		c.tasks[u] = map[string]*pb.Task{}
	}
	c.tasks[u][t.GetId()] = t
	if id := t.GetNodeId(); id != "" {
		if c.onNode[id] == nil {
			c.onNode[id] = map[unit]bool{}
		}
		c.onNode[id][u] = true
	}
}

// check runs at the end of commit index over the units it touched.
func (c *checker) check(index uint64) {
	for u := range c.touched {
		live, active := 0, 0
		for _, t := range c.tasks[u] {
			if t.GetDesiredState() <= running {
				live++
			}
			s := t.GetStatus().GetState()
			if s >= assigned && s <= running && !c.down[t.GetNodeId()] {
				active++
			}
		}
		if live > 1 {
			c.violations = append(c.violations, fmt.Sprintf("at index %d, %+v has %d tasks desired running", index, u, live))
		}
		if active > 1 {
			c.violations = append(c.violations, fmt.Sprintf("at index %d, %+v has %d tasks assigned or running on nodes that are up", index, u, active))
		}
	}
	clear(c.touched)
	c.commits++
}

func (c *checker) result() error {
	if len(c.violations) == 0 {
		return nil
	}
	return fmt.Errorf("slot checker: %d violations in %d commits, first: %v", len(c.violations), c.commits, c.violations[:min(5, len(c.violations))])
}
