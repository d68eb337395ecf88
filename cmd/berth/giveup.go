package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/pflag"

	pb "berth/proto/berth/v1"
)

// permanentRepeats is how many failures in a row with the same error make
// a unit's error permanent when the restart policy retries without end:
// a missing image or command fails every attempt the same way, and
// waiting for the next attempt tells the user nothing new.
const permanentRepeats = 3

// failures remembers, per unit (slot, or node of a global service), the
// errors its tasks failed with, oldest first. It keeps them when the
// managers drop old tasks from the service's history.
type failures struct {
	seen  map[string]bool // task IDs counted
	units map[string][]string
}

func newFailures() *failures {
	return &failures{seen: map[string]bool{}, units: map[string][]string{}}
}

// note counts t if it has just ended in failure.
func (f *failures) note(t *pb.Task) {
	st := t.GetStatus().GetState()
	if st != pb.TaskState_TASK_STATE_FAILED && st != pb.TaskState_TASK_STATE_REJECTED || f.seen[t.GetId()] {
		return
	}
	f.seen[t.GetId()] = true
	k := unitKey(t)
	f.units[k] = append(f.units[k], t.GetStatus().GetErr())
}

// givenUp says why waiting for the service can end, when it can: a unit
// failed and its restart policy will not start it again (condition none,
// or more failures than max_attempts), or it failed permanentRepeats
// times in a row with the same error under a policy without a limit.
// Failures are counted from the start of the wait, which is what a
// create or scale waits on.
func (f *failures) givenUp(svc *pb.Service) (string, bool) {
	pol := svc.GetSpec().GetTask().GetRestart()
	name := svc.GetSpec().GetAnnotations().GetName()
	keys := make([]string, 0, len(f.units))
	for k := range f.units {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		errs := f.units[k]
		last := errs[len(errs)-1]
		switch {
		case pol.GetCondition() == pb.RestartPolicy_CONDITION_NONE:
			return fmt.Sprintf("task %s.%s failed: %s; its restart condition is none, so nothing replaces it", name, k, last), true
		case pol.GetMaxAttempts() > 0 && uint64(len(errs)) > pol.GetMaxAttempts():
			return fmt.Sprintf("task %s.%s failed %d times, the last with: %s; its restart policy allows %d attempts", name, k, len(errs), last, pol.GetMaxAttempts()), true
		case pol.GetMaxAttempts() == 0 && repeated(errs, permanentRepeats):
			return fmt.Sprintf("task %s.%s failed %d times in a row with: %s; the managers keep retrying it (see `berth service ps %s`): fix the spec with `berth service update` or remove the service", name, k, permanentRepeats, last, name), true
		}
	}
	return "", false
}

// repeated says whether the last n errors are the same one.
func repeated(errs []string, n int) bool {
	if len(errs) < n {
		return false
	}
	tail := errs[len(errs)-n:]
	for _, e := range tail {
		if e != tail[0] || strings.TrimSpace(e) == "" {
			return false
		}
	}
	return true
}

// timeoutFlagHelp is the help of --timeout on commands that wait.
const timeoutFlagHelp = "stop waiting after `DURATION` and exit 1, the service still converging (0: wait until it converges or fails)"

// addTimeoutFlag adds --timeout to a command that waits.
func addTimeoutFlag(fs *pflag.FlagSet) *time.Duration {
	return fs.Duration("timeout", 0, timeoutFlagHelp)
}

// waitContext bounds a wait by --timeout d, when d is set. The bound
// stays with the CLI (a timer, not a gRPC deadline): a deadline would
// reach the manager, which may end the stream before the client knows
// why; here the context's cause says --timeout ran out.
func waitContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	if d <= 0 {
		return ctx, func() { cancel(nil) }
	}
	timer := time.AfterFunc(d, func() { cancel(fmt.Errorf("--timeout %s ran out", d)) })
	return ctx, func() { timer.Stop(); cancel(nil) }
}
