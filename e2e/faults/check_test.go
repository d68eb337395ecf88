package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"berth/internal/faults"
	pb "berth/proto/berth/v1"
)

// finalClient is the client ID of the reads made after the run.
const finalClient = 99

// awaitInvariants reads every name once more (into the history) and holds
// the result to the acknowledged writes, then waits up to within for the
// store and the hosts to settle: it returns nil once every invariant holds,
// or the last violation.
func (r *run) awaitInvariants(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	if err := r.finalReads(ctx); err != nil {
		return err
	}
	var last error
	for {
		if last = r.checkOnce(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// finalReads reads every name until some manager answers it definitely,
// and checks the answers against the acknowledged writes.
func (r *run) finalReads(ctx context.Context) error {
	finals := r.w.hist.Finals()
	for _, name := range names {
		var out faults.Output
		for i := 0; ; i++ {
			// Client IDs pick managers in turn (workload.control).
			out, _ = r.w.get(ctx, finalClient+i, name)
			if out.Outcome == faults.OK || out.Outcome == faults.NotFound {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("read %s after the faults: no manager answers: %w", name, errNotSettled)
			}
			pause(ctx, 200*time.Millisecond)
		}
		want, judged := finals[name]
		if judged && !oneOf(out, want) {
			return fmt.Errorf("acknowledged write lost: %s reads %s %d after the run, want one of %v", name, out.Outcome, out.Value, want)
		}
	}
	return nil
}

func oneOf(out faults.Output, want []faults.Output) bool {
	for _, w := range want {
		if w.Outcome == out.Outcome && (w.Outcome != faults.OK || w.Value == out.Value) {
			return true
		}
	}
	return false
}

// state is the cluster as the store holds it.
type state struct {
	services []*pb.Service
	tasks    []*pb.Task
	nodes    []*pb.Node
}

// storeState lists services, tasks and nodes from the first manager that
// answers.
func (r *run) storeState(ctx context.Context) (*state, error) {
	var last error
	for i := range r.c.Managers {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		st, err := r.listAll(cctx, i)
		cancel()
		if err == nil {
			return st, nil
		}
		last = err
	}
	return nil, fmt.Errorf("read the store: %w", last)
}

func (r *run) listAll(ctx context.Context, i int) (*state, error) {
	c := r.w.control(i)
	st := &state{}
	for tok := ""; ; {
		resp, err := c.ListServices(ctx, &pb.ListServicesRequest{PageToken: tok})
		if err != nil {
			return nil, err
		}
		st.services = append(st.services, resp.GetServices()...)
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	for tok := ""; ; {
		resp, err := c.ListTasks(ctx, &pb.ListTasksRequest{PageToken: tok})
		if err != nil {
			return nil, err
		}
		st.tasks = append(st.tasks, resp.GetTasks()...)
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	resp, err := c.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	st.nodes = resp.GetNodes()
	return st, nil
}

// checkOnce checks every invariant once, from the store and the hosts.
func (r *run) checkOnce(ctx context.Context) error {
	st, err := r.storeState(ctx)
	if err != nil {
		return err
	}
	onHosts, err := r.hostContainers()
	if err != nil {
		return err
	}
	return errors.Join(nodesReady(st), noTaskOnDownNode(st), replicasInStore(st), r.replicasOnHosts(st, onHosts))
}

func nodesReady(st *state) error {
	for _, n := range st.nodes {
		if n.GetStatus().GetState() != pb.NodeStatus_STATE_READY {
			return fmt.Errorf("node %s is %s", n.GetDescription().GetHostname(), n.GetStatus().GetState())
		}
	}
	return nil
}

// live is a task the managers want running.
func live(t *pb.Task) bool { return t.GetDesiredState() == pb.TaskState_TASK_STATE_RUNNING }

func noTaskOnDownNode(st *state) error {
	down := map[string]string{}
	for _, n := range st.nodes {
		if n.GetStatus().GetState() == pb.NodeStatus_STATE_DOWN {
			down[n.GetId()] = n.GetDescription().GetHostname()
		}
	}
	for _, t := range st.tasks {
		if live(t) && down[t.GetNodeId()] != "" {
			return fmt.Errorf("task %s is to run on %s, which is down", t.GetId(), down[t.GetNodeId()])
		}
	}
	return nil
}

// replicasInStore: every service has exactly its replicas desired and
// observed running, and no slot twice.
func replicasInStore(st *state) error {
	for _, s := range st.services {
		want := int(s.GetSpec().GetReplicas())
		name := s.GetSpec().GetAnnotations().GetName()
		desired, running, slots := 0, 0, map[uint64]int{}
		for _, t := range st.tasks {
			if t.GetServiceId() != s.GetId() || !live(t) {
				continue
			}
			desired++
			slots[t.GetSlot()]++
			if t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
				running++
			}
		}
		if desired != want || running != want {
			return fmt.Errorf("service %s: %d tasks desired and %d running in the store, want %d", name, desired, running, want)
		}
		for slot, k := range slots {
			if k > 1 {
				return fmt.Errorf("service %s: slot %d has %d live tasks", name, slot, k)
			}
		}
	}
	return nil
}

// container is a container running on an agent's host, from the agent's
// runtime state.
type container struct {
	id, agent string
}

// hostContainers lists the containers whose init process is alive on each
// agent's host, read from the runtime's state files and /proc, not from
// the agent or the store.
func (r *run) hostContainers() ([]container, error) {
	var out []container
	for _, a := range r.c.Agents {
		dir := filepath.Join(a.DataDir, "runtime", "containers")
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			if alive(filepath.Join(dir, e.Name(), "state.json")) {
				out = append(out, container{id: e.Name(), agent: a.Name})
			}
		}
	}
	return out, nil
}

// alive reports whether the container whose state file is path has a live
// init: no exit recorded, and its PID still the process it started as.
func alive(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	var rec struct {
		Pid       int             `json:"pid"`
		StartTime uint64          `json:"startTime"`
		Exit      json.RawMessage `json:"exit"`
	}
	if json.Unmarshal(b, &rec) != nil || rec.Pid <= 0 || (len(rec.Exit) > 0 && string(rec.Exit) != "null") {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", rec.Pid))
	if err != nil {
		return false
	}
	// Field 22 (starttime) counts from after the ")" ending the command.
	rest := string(stat)
	if i := strings.LastIndexByte(rest, ')'); i >= 0 {
		rest = rest[i+1:]
	}
	f := strings.Fields(rest)
	if len(f) < 20 || f[0] == "Z" {
		return false
	}
	start, _ := strconv.ParseUint(f[19], 10, 64)
	return start == rec.StartTime
}

// replicasOnHosts: the containers running on the hosts are exactly the
// live tasks, each on the node it is assigned to; so every service runs
// its replicas, no slot twice, and nothing runs that the store does not
// want (no orphan).
func (r *run) replicasOnHosts(st *state, onHosts []container) error {
	tasks := map[string]*pb.Task{}
	for _, t := range st.tasks {
		tasks[t.GetId()] = t
	}
	nodeOf := map[string]string{} // node ID -> agent name
	for _, n := range st.nodes {
		nodeOf[n.GetId()] = n.GetDescription().GetHostname()
	}
	svcName := map[string]string{}
	for _, s := range st.services {
		svcName[s.GetId()] = s.GetSpec().GetAnnotations().GetName()
	}
	perSlot, perService := map[string]int{}, map[string]int{}
	for _, c := range onHosts {
		t := tasks[c.id]
		switch {
		case t == nil:
			return fmt.Errorf("orphaned container %s on %s: no such task in the store", c.id, c.agent)
		case !live(t):
			return fmt.Errorf("orphaned container %s on %s: its task of %s is %s", c.id, c.agent, svcName[t.GetServiceId()], t.GetDesiredState())
		case nodeOf[t.GetNodeId()] != c.agent:
			return fmt.Errorf("container %s runs on %s, its task is on %s", c.id, c.agent, nodeOf[t.GetNodeId()])
		}
		perSlot[fmt.Sprintf("%s.%d", svcName[t.GetServiceId()], t.GetSlot())]++
		perService[t.GetServiceId()]++
	}
	for slot, k := range perSlot {
		if k > 1 {
			return fmt.Errorf("slot %s runs %d containers on the hosts", slot, k)
		}
	}
	var errs []string
	for _, s := range st.services {
		if got, want := perService[s.GetId()], int(s.GetSpec().GetReplicas()); got != want {
			errs = append(errs, fmt.Sprintf("service %s runs %d containers on the hosts, want %d", svcName[s.GetId()], got, want))
		}
	}
	sort.Strings(errs)
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}
