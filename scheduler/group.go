package scheduler

import (
	"strings"

	pb "berth/proto/berth/v1"
)

// class is what tasks with the same constraints and preferences share:
// the nodes that pass the static filters, arranged by preference values,
// and how many nodes each static filter refused. Node attributes do not
// change within a Cluster, so a class is built once and reused by every
// group (every service) that has it.
type class struct {
	nodes   []*nodeInfo
	root    *shape
	refused []int // per static filter of the pipeline
}

// classKey names t's class: its constraints and preferences.
func classKey(t *pb.Task) string {
	pl := t.GetSpec().GetPlacement()
	var b strings.Builder
	for _, c := range pl.GetConstraints() {
		b.WriteString(c)
		b.WriteByte(0)
	}
	b.WriteByte(1)
	for _, p := range pl.GetPreferences() {
		b.WriteString(p.GetSpreadDescriptor())
		b.WriteByte(0)
	}
	return b.String()
}

// classFor returns the class of t, whose pipeline is p.
func (c *Cluster) classFor(t *pb.Task, p *pipeline) *class {
	key := classKey(t)
	if cl := c.classes[key]; cl != nil {
		return cl
	}
	var pass []*nodeInfo
	for _, n := range c.nodes {
		if p.checkStatic(n) {
			pass = append(pass, n)
		}
	}
	var descs []string
	for _, pref := range t.GetSpec().GetPlacement().GetPreferences() {
		descs = append(descs, pref.GetSpreadDescriptor())
	}
	cl := &class{nodes: make([]*nodeInfo, 0, len(pass)), refused: append([]int(nil), p.refused[:p.static]...)}
	cl.root = buildShape("", pass, descs, &cl.nodes)
	c.classes[key] = cl
	return cl
}

// placeGroup places tasks that share a service and placement. The static
// filters ran once for the class; the dynamic ones (resources, ports, max
// replicas) run over the class's nodes once for the group to build the
// placement tree, then once per node the tree offers. Each task costs a
// walk down the tree: O(log nodes) without preferences.
func (c *Cluster) placeGroup(tasks []*pb.Task, res *Result) {
	first := tasks[0]
	p, err := newPipeline(first)
	if err != nil {
		for _, t := range tasks {
			res.Unplaced = append(res.Unplaced, Unplaced{t.GetId(), err.Error()})
		}
		return
	}
	cl := c.classFor(first, p)
	copy(p.refused, cl.refused)
	svc := first.GetServiceId()
	c.markService(svc)
	defer c.unmarkService(svc)

	g := &groupPlacer{c: c, p: p, less: spreadLess, cands: c.cands[:0], ptrs: c.ptrs, max: len(tasks)}
	if first.GetSpec().GetPlacement().GetStrategy() == pb.Placement_STRATEGY_BINPACK {
		g.less = binpackLess
	}
	if c.exhaustive {
		g.max = len(c.nodes)
	}
	g.worse = func(a, b *candidate) bool { return g.less(b, a) }
	root := g.grow(cl, cl.root)
	for i, t := range tasks {
		g.task = t
		var chosen *candidate
		if root != nil {
			chosen = root.place(g)
		}
		if chosen == nil {
			reason := p.explain()
			for _, u := range tasks[i:] {
				res.Unplaced = append(res.Unplaced, Unplaced{u.GetId(), reason})
			}
			return
		}
		res.Assignments = append(res.Assignments, Assignment{t.GetId(), chosen.n.id})
	}
}

// markService copies each node's count of svc's tasks into its mark, so
// scanning nodes for a group reads a field instead of a map.
func (c *Cluster) markService(svc string) {
	for _, n := range c.svcNodes[svc] {
		n.mark = n.services[svc]
	}
}

func (c *Cluster) unmarkService(svc string) {
	for _, n := range c.svcNodes[svc] {
		n.mark = 0
	}
}

// add records t as running on n.
func (c *Cluster) add(n *nodeInfo, t *pb.Task) {
	if svc := t.GetServiceId(); n.services[svc] == 0 {
		c.svcNodes[svc] = append(c.svcNodes[svc], n)
	}
	n.add(t)
}

// groupPlacer places the tasks of one group: it builds the group's tree
// over scratch candidates and tries one task at a time on the nodes the
// tree offers.
type groupPlacer struct {
	c     *Cluster
	p     *pipeline
	less  func(a, b *candidate) bool
	task  *pb.Task
	cands []candidate  // capacity for every node, so pointers stay valid
	ptrs  []*candidate // the heaps' backing store

	max   int                 // candidates kept per leaf: the group's size
	worst minHeap[*candidate] // a full leaf's kept candidates, worst on top
	worse func(a, b *candidate) bool
}

// grow builds the group's branch for shape s from the nodes passing the
// dynamic filters; nil when none does.
func (g *groupPlacer) grow(cl *class, s *shape) *branch {
	b := &branch{value: s.value, leaf: s.leaf}
	if s.leaf {
		start := len(g.cands)
		for _, n := range cl.nodes[s.lo:s.hi] {
			if g.p.checkDynamic(n) {
				b.count += n.mark
				g.keep(start, candidate{n: n, svc: n.mark})
			}
		}
		if len(g.cands) == start {
			return nil
		}
		b.nodes = minHeap[*candidate]{items: g.ptrs[start:len(g.cands):len(g.cands)], less: g.less}
		b.nodes.init()
		return b
	}
	b.children = minHeap[*branch]{less: branchLess}
	for _, cs := range s.children {
		if child := g.grow(cl, cs); child != nil {
			b.count += child.count
			b.children.items = append(b.children.items, child)
		}
	}
	if b.children.empty() {
		return nil
	}
	b.children.init()
	return b
}

// keep adds cd to the leaf whose candidates start at start, keeping only
// the g.max best. That loses nothing: a pick only makes the picked node's
// key worse (spread) or better (binpack) and leaves the others alone, so
// the j-th task of a group lands on one of the j best nodes of a leaf, and
// a node is only ever refused after it took a task. So g.max = the group's
// size keeps every node the group can use, and when a leaf runs dry with
// tasks left it was never cut, so the refusal counts cover every node.
// Small groups on big clusters then cost a scan, not a heap of every node.
func (g *groupPlacer) keep(start int, cd candidate) {
	g.cands = append(g.cands, cd)
	last := len(g.cands) - 1
	g.ptrs[last] = &g.cands[last]
	kept := last - start // before this one
	switch {
	case kept < g.max-1:
	case kept == g.max-1: // full: order the kept ones worst first
		g.worst = minHeap[*candidate]{items: g.ptrs[start : last+1], less: g.worse}
		g.worst.init()
	case g.less(g.ptrs[last], g.worst.top()):
		*g.worst.top() = cd
		g.worst.fixTop()
		g.cands = g.cands[:last]
	default:
		g.cands = g.cands[:last]
	}
}

// try re-runs the dynamic filters (the node may have filled up since the
// tree was built) and, if the node still fits, records the task on it.
func (g *groupPlacer) try(c *candidate) bool {
	if !g.p.checkDynamic(c.n) {
		return false
	}
	g.c.add(c.n, g.task)
	return true
}
