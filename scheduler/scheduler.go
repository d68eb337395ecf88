package scheduler

import (
	"cmp"
	"slices"
	"strconv"

	pb "berth/proto/berth/v1"
)

// Assignment places one task on one node.
type Assignment struct {
	TaskID string
	NodeID string
}

// Unplaced is a task no node could take, and why, in words a person can act
// on: "no suitable node (insufficient memory on 3 nodes; constraint
// node.labels.zone==c not met on 2 nodes)". The caller leaves the task
// pending and shows the reason (berth service ps).
type Unplaced struct {
	TaskID string
	Reason string
}

// Result is what one call to Place decided.
type Result struct {
	// Assignments in the order they were made.
	Assignments []Assignment
	// Unplaced tasks, in the order they were tried.
	Unplaced []Unplaced
}

// Cluster is the scheduler's in-memory view of a snapshot: every node with
// what its live tasks reserve, how many tasks of each service it runs and
// which host ports they bind. Place updates it as it assigns, so a leader
// may keep one Cluster across several batches of the same snapshot.
// A Cluster is not safe for concurrent use.
type Cluster struct {
	nodes    []*nodeInfo // by node ID, for deterministic scans
	byID     map[string]*nodeInfo
	svcNodes map[string][]*nodeInfo // nodes running each service
	classes  map[string]*class      // by classKey

	// exhaustive keeps every candidate node in the placement trees; tests
	// set it to check that keeping only the best ones decides the same.
	exhaustive bool

	// scratch for placeGroup, one slot per node
	cands []candidate
	ptrs  []*candidate
}

// New builds a Cluster from nodes and the tasks already assigned to them.
// assigned should hold the live tasks (desired state running or earlier);
// tasks on unknown nodes and tasks whose observed state is past running
// (complete, failed, ...) hold nothing and are ignored.
func New(nodes []*pb.Node, assigned []*pb.Task) *Cluster {
	c := &Cluster{
		nodes:    make([]*nodeInfo, 0, len(nodes)),
		byID:     make(map[string]*nodeInfo, len(nodes)),
		svcNodes: map[string][]*nodeInfo{},
		classes:  map[string]*class{},
	}
	for _, n := range nodes {
		if n == nil || c.byID[n.GetId()] != nil {
			continue
		}
		ni := newNodeInfo(n)
		c.byID[ni.id] = ni
		c.nodes = append(c.nodes, ni)
	}
	slices.SortFunc(c.nodes, func(a, b *nodeInfo) int { return cmp.Compare(a.id, b.id) })
	for i, n := range c.nodes {
		n.rank = int32(i)
	}
	for _, t := range assigned {
		if ni := c.byID[t.GetNodeId()]; ni != nil && holdsResources(t) {
			c.add(ni, t)
		}
	}
	c.cands = make([]candidate, 0, len(c.nodes))
	c.ptrs = make([]*candidate, len(c.nodes))
	return c
}

// Schedule places pending tasks on nodes, given the tasks already assigned.
// It is New(nodes, assigned).Place(pending): a pure function, the same
// input giving the same output whatever the order of its slices.
func Schedule(nodes []*pb.Node, assigned, pending []*pb.Task) Result {
	return New(nodes, assigned).Place(pending)
}

// Place assigns pending tasks to nodes in one pass and records the
// assignments in c. A task whose NodeId is already set (a global service's
// task) may only go to that node. The others are grouped by service and
// placement-relevant spec (they share filters, so each group scans the nodes
// once) and placed group after group, in service ID order, slot by slot.
//
// Within a group tasks spread over the nodes that pass the filters: over the
// values of each placement preference in turn, then to the node with fewest
// tasks of the service, then fewest tasks overall, then lowest node ID; or,
// with Placement.Strategy BINPACK, to the fullest node that still fits.
func (c *Cluster) Place(pending []*pb.Task) Result {
	var res Result
	pinned, groups := c.sortPending(pending)
	for _, t := range pinned {
		c.placePinned(t, &res)
	}
	for _, g := range groups {
		c.placeGroup(g, &res)
	}
	return res
}

type keyed struct {
	key string
	t   *pb.Task
}

// sortPending splits off pinned tasks and groups the rest, in a fixed order.
func (c *Cluster) sortPending(pending []*pb.Task) (pinned []*pb.Task, groups [][]*pb.Task) {
	items := make([]keyed, 0, len(pending))
	var buf []byte
	for _, t := range pending {
		switch {
		case t == nil:
		case t.GetNodeId() != "":
			pinned = append(pinned, t)
		default:
			buf = groupKey(buf[:0], t)
			items = append(items, keyed{string(buf), t})
		}
	}
	slices.SortFunc(pinned, func(a, b *pb.Task) int {
		return cmp.Or(cmp.Compare(a.GetServiceId(), b.GetServiceId()),
			cmp.Compare(a.GetNodeId(), b.GetNodeId()), cmp.Compare(a.GetId(), b.GetId()))
	})
	slices.SortFunc(items, func(a, b keyed) int {
		return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.t.GetSlot(), b.t.GetSlot()),
			cmp.Compare(a.t.GetId(), b.t.GetId()))
	})
	tasks := make([]*pb.Task, len(items))
	for i, it := range items {
		tasks[i] = it.t
		if i == 0 || it.key != items[i-1].key {
			groups = append(groups, tasks[i:i+1])
		} else {
			groups[len(groups)-1] = groups[len(groups)-1][:len(groups[len(groups)-1])+1]
		}
	}
	return pinned, groups
}

// groupKey appends to buf what decides where t may go: its service and every
// placement-relevant field of its spec. Tasks with equal keys share filters
// and a placement tree.
func groupKey(buf []byte, t *pb.Task) []byte {
	const sep = 0
	buf = append(buf, t.GetServiceId()...)
	buf = append(buf, sep)
	r := t.GetSpec().GetResources().GetReservations()
	buf = strconv.AppendInt(buf, r.GetNanoCpus(), 36)
	buf = append(buf, sep)
	buf = strconv.AppendInt(buf, r.GetMemoryBytes(), 36)
	buf = append(buf, sep)
	pl := t.GetSpec().GetPlacement()
	buf = strconv.AppendUint(buf, pl.GetMaxReplicasPerNode(), 36)
	buf = append(buf, sep, byte('0'+pl.GetStrategy()))
	for _, s := range pl.GetConstraints() {
		buf = append(buf, sep, 'c')
		buf = append(buf, s...)
	}
	for _, p := range pl.GetPreferences() {
		buf = append(buf, sep, 'p')
		buf = append(buf, p.GetSpreadDescriptor()...)
	}
	for _, p := range taskHostPorts(t) {
		buf = append(buf, sep, 'h')
		buf = append(buf, p.String()...)
	}
	return buf
}

// placePinned places a task bound to one node, if that node takes it.
func (c *Cluster) placePinned(t *pb.Task, res *Result) {
	ni := c.byID[t.GetNodeId()]
	if ni == nil {
		res.Unplaced = append(res.Unplaced, Unplaced{t.GetId(), noSuitableNode + " (node " + t.GetNodeId() + " is not in the cluster)"})
		return
	}
	p, err := newPipeline(t)
	if err != nil {
		res.Unplaced = append(res.Unplaced, Unplaced{t.GetId(), err.Error()})
		return
	}
	if !p.check(ni) {
		res.Unplaced = append(res.Unplaced, Unplaced{t.GetId(), p.explain()})
		return
	}
	c.add(ni, t)
	res.Assignments = append(res.Assignments, Assignment{t.GetId(), ni.id})
}
