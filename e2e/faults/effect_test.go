package faults

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// effectTimeout bounds how long a fault may take to show: a fault that
// never shows tested nothing, and fails the scenario.
const effectTimeout = 30 * time.Second

// effect waits until cond holds, and records how long it took under what
// (e.g. "new leader"), for the report; the scenario fails if it never does.
func (r *run) effect(ctx context.Context, what string, cond func(context.Context) bool) {
	start := time.Now()
	if !until(ctx, cond) {
		r.t.Errorf("fault had no effect: %s not seen within %s", what, effectTimeout)
		return
	}
	r.mu.Lock()
	r.effects[what] = append(r.effects[what], time.Since(start))
	r.mu.Unlock()
}

// until polls cond until it holds (true) or effectTimeout passes (false).
func until(ctx context.Context, cond func(context.Context) bool) bool {
	ctx, cancel := context.WithTimeout(ctx, effectTimeout)
	defer cancel()
	for !cond(ctx) {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
	return true
}

// effectSummary is "new leader ≤ 2.1s; a1 down ≤ 3.4s".
func (r *run) effectSummary() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for what, ds := range r.effects {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		out = append(out, fmt.Sprintf("%s ≤ %s", what, ds[len(ds)-1].Round(100*time.Millisecond)))
	}
	sort.Strings(out)
	return strings.Join(out, "; ")
}

// newLeader waits until a manager other than old leads.
func (r *run) newLeader(ctx context.Context, old *e2ecluster.Node) {
	r.effect(ctx, "new leader", func(ctx context.Context) bool {
		m, err := r.leader(ctx)
		return err == nil && m != old
	})
}

// nodeIs waits until some manager reports the node named host in state.
func (r *run) nodeIs(ctx context.Context, host string, state pb.NodeStatus_State) {
	what := fmt.Sprintf("%s %s", host, strings.ToLower(strings.TrimPrefix(state.String(), "STATE_")))
	r.effect(ctx, what, r.nodeState(host, state))
}

// nodeState is a condition: some manager reports the node named host in
// state.
func (r *run) nodeState(host string, state pb.NodeStatus_State) func(context.Context) bool {
	return func(ctx context.Context) bool {
		for i := range r.c.Managers {
			cctx, cancel := context.WithTimeout(ctx, opTimeout)
			resp, err := r.w.control(i).ListNodes(cctx, &pb.ListNodesRequest{})
			cancel()
			if err != nil {
				continue
			}
			for _, n := range resp.GetNodes() {
				if n.GetDescription().GetHostname() == host {
					return n.GetStatus().GetState() == state
				}
			}
		}
		return false
	}
}
