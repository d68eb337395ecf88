package agent

import "testing"

// TestExecOnlyInAssignedTasks: a container on the node that belongs to no
// task assigned to it is not served, whatever a manager asks.
func TestExecOnlyInAssignedTasks(t *testing.T) {
	fe := newFakeExec()
	fe.add("assigned")
	fe.add("leftover")
	w := &worker{tasks: map[string]*controller{"assigned": nil}}
	cs := assignedContainers{w: w, exec: fe}
	if _, ok := cs.Container("assigned"); !ok {
		t.Error("the container of an assigned task is not served")
	}
	for _, id := range []string{"leftover", "nothing"} {
		if _, ok := cs.Container(id); ok {
			t.Errorf("container %q, of no assigned task, is served", id)
		}
	}
}
