package controlapi

import (
	"fmt"

	pb "berth/proto/berth/v1"
	"berth/store"
)

// checkCapacity refuses resources no node of the cluster could give: a
// CPU limit above the most CPUs a node has, or a reservation of CPU or
// memory above the largest node's. Such tasks would wait forever as
// "no suitable node"; the error names the largest node's figure. A
// cluster whose nodes report no resources yet (none joined) is not
// judged.
func checkCapacity(tx store.ReadTx, r *pb.Resources) error {
	if r.GetLimits().GetNanoCpus() == 0 && r.GetReservations().GetNanoCpus() == 0 && r.GetReservations().GetMemoryBytes() == 0 {
		return nil
	}
	nodes, err := tx.FindNodes(store.All)
	if err != nil {
		return err
	}
	var cpuNode, memNode *pb.Node
	for _, n := range nodes {
		res := n.GetDescription().GetResources()
		if res.GetNanoCpus() > cpuNode.GetDescription().GetResources().GetNanoCpus() {
			cpuNode = n
		}
		if res.GetMemoryBytes() > memNode.GetDescription().GetResources().GetMemoryBytes() {
			memNode = n
		}
	}
	if cpus := cpuNode.GetDescription().GetResources().GetNanoCpus(); cpus > 0 {
		for _, c := range []struct {
			field string
			n     int64
			flag  string
		}{
			{"resources.limits.nano_cpus", r.GetLimits().GetNanoCpus(), "--limit-cpu"},
			{"resources.reservations.nano_cpus", r.GetReservations().GetNanoCpus(), "--reserve-cpu"},
		} {
			if c.n > cpus {
				return invalid("invalid %s: %g CPUs is more than any node has (the largest, %s, has %g); lower %s",
					c.field, float64(c.n)/1e9, nodeName(cpuNode), float64(cpus)/1e9, c.flag)
			}
		}
	}
	if mem := memNode.GetDescription().GetResources().GetMemoryBytes(); mem > 0 && r.GetReservations().GetMemoryBytes() > mem {
		return invalid("invalid resources.reservations.memory_bytes: %s is more memory than any node has (the largest, %s, has %s); lower --reserve-memory",
			bytesString(r.GetReservations().GetMemoryBytes()), nodeName(memNode), bytesString(mem))
	}
	return nil
}

func nodeName(n *pb.Node) string {
	if name := n.GetSpec().GetAnnotations().GetName(); name != "" {
		return name
	}
	return n.GetDescription().GetHostname()
}

// bytesString shows a size in MiB, the unit memory flags are mostly given in.
func bytesString(b int64) string {
	return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20))
}
