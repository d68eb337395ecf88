package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
		case <-time.After(200 * time.Millisecond):
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

// storeState lists services, tasks and nodes from the first manager that
// answers.
func (r *run) storeState(ctx context.Context) (*faults.State, error) {
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

func (r *run) listAll(ctx context.Context, i int) (*faults.State, error) {
	c := r.w.control(i)
	st := &faults.State{}
	for tok := ""; ; {
		resp, err := c.ListServices(ctx, &pb.ListServicesRequest{PageToken: tok})
		if err != nil {
			return nil, err
		}
		st.Services = append(st.Services, resp.GetServices()...)
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	for tok := ""; ; {
		resp, err := c.ListTasks(ctx, &pb.ListTasksRequest{PageToken: tok})
		if err != nil {
			return nil, err
		}
		st.Tasks = append(st.Tasks, resp.GetTasks()...)
		if tok = resp.GetNextPageToken(); tok == "" {
			break
		}
	}
	resp, err := c.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return nil, err
	}
	st.Nodes = resp.GetNodes()
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
	return errors.Join(faults.CheckState(st, onHosts), r.managersServe(ctx))
}

// hostContainers lists the containers whose init process is alive on each
// agent's host, read from the runtime's state files and /proc, not from
// the agent or the store.
func (r *run) hostContainers() ([]faults.Container, error) {
	var out []faults.Container
	for _, a := range r.c.Agents {
		dir := a.ContainerStateDir()
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		for _, e := range entries {
			if alive(filepath.Join(dir, e.Name(), "state.json")) {
				out = append(out, faults.Container{ID: e.Name(), Host: a.Name})
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

// managersServe checks that every manager answers a consistent read: each
// has caught up with the cluster after the faults.
func (r *run) managersServe(ctx context.Context) error {
	for i, m := range r.c.Managers {
		cctx, cancel := context.WithTimeout(ctx, opTimeout)
		_, err := r.w.control(i).ListServices(cctx, &pb.ListServicesRequest{})
		cancel()
		if err != nil {
			return fmt.Errorf("manager %s does not serve reads: %w", m.Name, err)
		}
	}
	return nil
}
