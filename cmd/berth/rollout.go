package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// rolloutView is what `service update` and `service rollback` show while
// an update rolls out: how many units run the new spec, one line per unit
// as it changes, and the service's update status.
type rolloutView struct {
	svc   *pb.Service
	tasks map[string]*pb.Task
	lines map[string]string // unit → last line printed
	// reason is why the update was rolled back, once seen.
	reason string
}

// unitKey names a task's unit the way Docker's progress does: its slot,
// or its node for a global service.
func unitKey(t *pb.Task) string {
	if t.GetSlot() > 0 {
		return fmt.Sprintf("%d", t.GetSlot())
	}
	return shortID(t.GetNodeId())
}

// units maps each unit to its best live task, as the updater sees it.
func (v *rolloutView) units() map[string]*pb.Task {
	out := map[string]*pb.Task{}
	for _, t := range v.tasks {
		if t.GetDesiredState() > pb.TaskState_TASK_STATE_RUNNING {
			continue
		}
		k := unitKey(t)
		if cur, ok := out[k]; !ok || v.rank(t) > v.rank(cur) {
			out[k] = t
		}
	}
	return out
}

// rank prefers a task with the current spec, then one further along.
func (v *rolloutView) rank(t *pb.Task) int {
	r := int(t.GetStatus().GetState())
	if v.current(t) {
		r += 1 << 16
	}
	return r
}

func (v *rolloutView) current(t *pb.Task) bool {
	return proto.Equal(t.GetSpec(), v.svc.GetSpec().GetTask())
}

// done counts the units whose task runs the current spec, and the units.
func (v *rolloutView) done() (done, want int) {
	units := v.units()
	for _, t := range units {
		if v.current(t) && t.GetStatus().GetState() == pb.TaskState_TASK_STATE_RUNNING {
			done++
		}
	}
	want = len(units)
	if v.svc.GetSpec().GetMode() == pb.ServiceMode_SERVICE_MODE_REPLICATED {
		want = int(v.svc.GetSpec().GetReplicas())
	}
	return done, want
}

// print writes the overall line and the units whose line changed.
func (v *rolloutView) print(w io.Writer, last *string) {
	done, want := v.done()
	if line := fmt.Sprintf("overall progress: %d out of %d tasks", done, want); line != *last {
		fmt.Fprintln(w, line)
		*last = line
	}
	units := v.units()
	keys := make([]string, 0, len(units))
	for k := range units {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if len(keys[i]) != len(keys[j]) {
			return len(keys[i]) < len(keys[j])
		}
		return keys[i] < keys[j]
	})
	for _, k := range keys {
		t := units[k]
		line := lowerEnum(t.GetStatus().GetState().String(), "TASK_STATE_")
		if !v.current(t) {
			line += " (previous spec)"
		}
		if e := t.GetStatus().GetErr(); e != "" {
			line += ": " + e
		}
		if v.lines[k] != line {
			fmt.Fprintf(w, "%s/%d: %s\n", k, want, line)
			v.lines[k] = line
		}
	}
}

// errRolledBack is returned when an update was rolled back by itself.
var errRolledBack = errors.New("update rolled back")

// waitRollout follows an update (or rollback) of svc until it completes,
// pauses, its new tasks fail for good (failures.givenUp) or ctx ends. svc is the service as the update left it. A change
// that started no update (replicas, labels) waits for convergence instead.
func waitRollout(ctx context.Context, c pb.ControlClient, svc *pb.Service, w io.Writer) error {
	if svc.GetUpdateStatus() == nil {
		return waitConverged(ctx, c, svc, w)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.WatchTasks(ctx, &pb.WatchTasksRequest{ServiceIds: []string{svc.GetId()}}, grpc.WaitForReady(false))
	if err != nil {
		return err
	}
	msgs := make(chan *pb.WatchTasksResponse)
	errc := make(chan error, 1)
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				errc <- err
				return
			}
			select {
			case msgs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	v := &rolloutView{svc: svc, tasks: map[string]*pb.Task{}, lines: map[string]string{}}
	fails := newFailures()
	name := svc.GetSpec().GetAnnotations().GetName()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	var last, lastStatus string
	for {
		select {
		case r := <-msgs:
			for _, t := range r.GetTasks() {
				v.tasks[t.GetId()] = t
				if v.current(t) {
					fails.note(t)
				}
			}
			for _, id := range r.GetRemoved() {
				delete(v.tasks, id)
			}
		case <-tick.C:
			resp, err := c.GetService(ctx, &pb.GetServiceRequest{ServiceId: svc.GetId()})
			if err != nil {
				return err
			}
			v.svc = resp.GetService()
		case err := <-errc:
			if ctx.Err() == nil {
				return err
			}
			return fmt.Errorf("stopped waiting for %s: %w (the update goes on; see `berth service inspect --pretty %s`)", name, context.Cause(ctx), name)
		case <-ctx.Done():
			return fmt.Errorf("stopped waiting for %s: %w (the update goes on; see `berth service inspect --pretty %s`)", name, context.Cause(ctx), name)
		}
		v.print(w, &last)
		if end, err := v.finished(svc, w, &lastStatus); end {
			return err
		}
		// An update that goes on through failures (--update-failure-action
		// continue) may never pause; its new tasks failing for good end the
		// wait as they end a create's.
		if why, ok := fails.givenUp(v.svc); ok {
			return fmt.Errorf("%s did not converge: %s", name, why)
		}
	}
}

// finished reports whether the rollout ended, printing status changes; the
// error says how it ended when not as asked.
func (v *rolloutView) finished(started *pb.Service, w io.Writer, last *string) (bool, error) {
	st := v.svc.GetUpdateStatus()
	if msg := st.GetMessage(); msg != *last {
		*last = msg
		if st.GetState() == pb.UpdateStatus_STATE_ROLLBACK_STARTED && started.GetUpdateStatus().GetState() != pb.UpdateStatus_STATE_ROLLBACK_STARTED {
			fmt.Fprintln(w, "rollback: "+msg)
			v.reason = msg
		}
	}
	if v.svc.GetSpecVersion() != started.GetSpecVersion() && st.GetState() == pb.UpdateStatus_STATE_UPDATING {
		return true, fmt.Errorf("%s was updated again; that update supersedes this one", started.GetSpec().GetAnnotations().GetName())
	}
	done, want := v.done()
	switch st.GetState() {
	case pb.UpdateStatus_STATE_PAUSED, pb.UpdateStatus_STATE_ROLLBACK_PAUSED:
		return true, errors.New(st.GetMessage())
	case pb.UpdateStatus_STATE_COMPLETED, pb.UpdateStatus_STATE_ROLLBACK_COMPLETED:
		if done != want {
			return false, nil
		}
		fmt.Fprintln(w, "verify: Service converged")
		if st.GetState() == pb.UpdateStatus_STATE_ROLLBACK_COMPLETED && started.GetUpdateStatus().GetState() != pb.UpdateStatus_STATE_ROLLBACK_STARTED {
			return true, fmt.Errorf("%w: %s", errRolledBack, v.rollbackReason())
		}
		return true, nil
	}
	return false, nil
}

// rollbackReason is why an update was rolled back, from the service.
func (v *rolloutView) rollbackReason() string {
	if v.reason != "" {
		return v.reason
	}
	return "a task of the update failed; see `berth service ps`"
}

// followRollout waits for the rollout svc started, for at most timeout
// when it is set.
func followRollout(cmd *cobra.Command, g *globalOpts, svc *pb.Service, timeout time.Duration) error {
	ctx, cancel := waitContext(cmd.Context(), timeout)
	defer cancel()
	return g.stream(ctx, func(ctx context.Context, c pb.ControlClient) error {
		return waitRollout(ctx, c, svc, cmd.OutOrStdout())
	})
}

func newServiceRollbackCmd(g *globalOpts) *cobra.Command {
	var detach bool
	cmd := &cobra.Command{
		Use:   "rollback [OPTIONS] SERVICE",
		Short: "Return a service to its previous spec, under its rollback config",
		Args:  cobra.ExactArgs(1),
	}
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "return at once instead of following the rollback")
	timeout := addTimeoutFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		var svc *pb.Service
		err := g.edit(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
			cur, err := c.GetService(ctx, &pb.GetServiceRequest{ServiceId: args[0]})
			if err != nil {
				return err
			}
			resp, err := c.UpdateService(ctx, &pb.UpdateServiceRequest{ServiceId: cur.GetService().GetId(),
				ServiceVersion: cur.GetService().GetMeta().GetVersion(), Rollback: true})
			if err != nil {
				return err
			}
			svc = resp.GetService()
			fmt.Fprintln(cmd.OutOrStdout(), svc.GetSpec().GetAnnotations().GetName())
			return nil
		})
		if err != nil || detach {
			return err
		}
		return followRollout(cmd, g, svc, *timeout)
	}
	return cmd
}
