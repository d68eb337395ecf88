package scheduler

import "slices"

// candidate is a node that passed a task group's filters, with the number
// of the group's service tasks on it (kept here so ordering reads no map).
type candidate struct {
	n   *nodeInfo
	svc int32
}

// spreadLess orders nodes for spreading a service: fewest tasks of the
// service, then fewest tasks overall, then node ID so ties break the same
// way every time.
func spreadLess(a, b *candidate) bool {
	if a.svc != b.svc {
		return a.svc < b.svc
	}
	if a.n.total != b.n.total {
		return a.n.total < b.n.total
	}
	return a.n.rank < b.n.rank
}

// binpackLess orders nodes for binpacking: the fullest node that still fits
// first (by reserved share of its resources, then by task count), so tasks
// fill nodes one after the other and leave others empty.
func binpackLess(a, b *candidate) bool {
	la, lb := a.n.load(), b.n.load()
	if la != lb {
		return la > lb
	}
	if a.n.total != b.n.total {
		return a.n.total > b.n.total
	}
	return a.n.rank < b.n.rank
}

// branchLess spreads over the values of a placement preference: the value
// whose nodes run fewest tasks of the service first, then by value.
func branchLess(a, b *branch) bool {
	if a.count != b.count {
		return a.count < b.count
	}
	return a.value < b.value
}

// shape is the part of a placement tree that placements cannot change:
// the nodes passing a class's static filters, partitioned by the values of
// its placement preferences in order (spread=node.labels.region, then
// spread=node.labels.zone, ...). Nodes without a label share the value ""
// and get tasks as one group, as Docker's do. With no preferences the shape
// is one leaf holding every node.
type shape struct {
	value    string
	leaf     bool
	children []*shape // by value
	lo, hi   int      // a leaf's span of class.nodes
}

// buildShape arranges nodes (in ID order) under the descriptors, appending
// them leaf by leaf to *out.
func buildShape(value string, nodes []*nodeInfo, descs []string, out *[]*nodeInfo) *shape {
	s := &shape{value: value}
	if len(descs) == 0 {
		s.leaf, s.lo = true, len(*out)
		*out = append(*out, nodes...)
		s.hi = len(*out)
		return s
	}
	groups := map[string][]*nodeInfo{}
	var values []string
	for _, n := range nodes {
		v := n.label(descs[0])
		if _, seen := groups[v]; !seen {
			values = append(values, v)
		}
		groups[v] = append(groups[v], n)
	}
	slices.Sort(values)
	for _, v := range values {
		s.children = append(s.children, buildShape(v, groups[v], descs[1:], out))
	}
	return s
}

// branch is one value of a placement preference (zone=a) for one task
// group, holding either the next preference's values or, at the last level,
// the candidate nodes themselves.
type branch struct {
	value    string
	count    int32 // tasks of the service on the branch's nodes
	leaf     bool
	children minHeap[*branch]
	nodes    minHeap[*candidate]
}

// place puts one task on the best node under b that g accepts and returns
// it, or nil when no node under b takes it. g checks the node (counting a
// refusal) and, when it fits, records the task on it. A node g refuses is
// dropped for the rest of the group: placements only ever use a node up
// further, and every task of the group needs the same.
func (b *branch) place(g *groupPlacer) *candidate {
	if b.leaf {
		for !b.nodes.empty() {
			c := b.nodes.top()
			if g.try(c) {
				c.svc++
				b.count++
				b.nodes.fixTop()
				return c
			}
			b.nodes.dropTop()
		}
		return nil
	}
	for !b.children.empty() {
		if c := b.children.top().place(g); c != nil {
			b.count++
			b.children.fixTop()
			return c
		}
		b.children.dropTop()
	}
	return nil
}
