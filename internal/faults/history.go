package faults

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// History records the operations of a run, from any number of clients at
// once. Times are nanoseconds since the history began, from the monotonic
// clock.
type History struct {
	start time.Time

	mu  sync.Mutex
	ops []porcupine.Operation
}

// NewHistory starts an empty history.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the history's clock: call it just before sending an operation.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Add records an operation client called at call and that answered out
// now. An Unknown outcome is recorded as never returning, so the checker
// may place its effect anywhere after its call; a read of unknown outcome
// says nothing and is left out.
func (h *History) Add(client int, in Input, call int64, out Output) {
	ret := h.Now()
	if out.Outcome == Unknown {
		if in.Kind == Read {
			return
		}
		ret = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// Ops returns a copy of the operations recorded so far.
func (h *History) Ops() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]porcupine.Operation(nil), h.ops...)
}

// Counts are a history's operations by outcome.
type Counts struct {
	Total, Acked, Failed, Unknown int
}

// Count tallies the history: acknowledged writes and reads, definite
// failures (not found, exists, conflict) and unknown outcomes.
func (h *History) Count() Counts {
	var c Counts
	for _, op := range h.Ops() {
		c.Total++
		switch op.Output.(Output).Outcome {
		case OK:
			c.Acked++
		case Unknown:
			c.Unknown++
		default:
			c.Failed++
		}
	}
	return c
}

// Verdict is the result of checking a history.
type Verdict struct {
	// Result is porcupine's: ok, illegal, or unknown when the check ran
	// out of time.
	Result porcupine.CheckResult
	// Info holds the partial linearizations, for a visualization.
	Info porcupine.LinearizationInfo
}

// Check runs porcupine on the history with Model, for at most timeout.
func (h *History) Check(timeout time.Duration) Verdict {
	res, info := porcupine.CheckOperationsVerbose(Model(), h.Ops(), timeout)
	return Verdict{Result: res, Info: info}
}

// Finals returns, for every name whose writes all have known outcomes,
// the states it may be in once the run is over: present with the value of
// an acknowledged write that no later acknowledged write superseded
// (started after it returned), or absent after such a remove or when no
// write succeeded. A read after the run that sees anything else has lost
// an acknowledged write, or applied a refused one. Names with a write of
// unknown outcome are left out: porcupine judges them.
func (h *History) Finals() map[string][]Output {
	writes := map[string][]porcupine.Operation{}
	unknown, named := map[string]bool{}, map[string]bool{}
	for _, op := range h.Ops() {
		in, out := op.Input.(Input), op.Output.(Output)
		if in.Kind == Read {
			continue
		}
		named[in.Name] = true
		switch out.Outcome {
		case Unknown:
			unknown[in.Name] = true
		case OK:
			writes[in.Name] = append(writes[in.Name], op)
		}
	}
	res := map[string][]Output{}
	for n := range named {
		if !unknown[n] {
			res[n] = finalsOf(writes[n])
		}
	}
	return res
}

// finalsOf is Finals for one name's acknowledged writes.
func finalsOf(ops []porcupine.Operation) []Output {
	if len(ops) == 0 {
		return []Output{{Outcome: NotFound}}
	}
	var maxCall int64
	for _, op := range ops {
		maxCall = max(maxCall, op.Call)
	}
	var outs []Output
	for _, op := range ops {
		if op.Return < maxCall {
			continue // a write started after this one returned
		}
		in := op.Input.(Input)
		o := Output{Outcome: OK, Value: in.Value}
		if in.Kind == Remove {
			o = Output{Outcome: NotFound}
		}
		outs = append(outs, o)
	}
	return outs
}

// Failing returns the names whose own history is not linearizable, each
// with its operations in call order as text, for a report a person reads.
func (h *History) Failing(timeout time.Duration) map[string]string {
	out := map[string]string{}
	for _, part := range partitionByName(h.Ops()) {
		if porcupine.CheckOperationsTimeout(Model(), part, timeout) != porcupine.Illegal {
			continue
		}
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		var b strings.Builder
		for _, op := range part {
			ret := "never"
			if op.Return != math.MaxInt64 {
				ret = fmt.Sprintf("%.3fs", float64(op.Return)/1e9)
			}
			in, o := op.Input.(Input), op.Output.(Output)
			fmt.Fprintf(&b, "client %d  %.3fs .. %s  %s -> %s", op.ClientId, float64(op.Call)/1e9, ret, in, o.Outcome)
			if in.Kind == Read && o.Outcome == OK {
				fmt.Fprintf(&b, " %d", o.Value)
			}
			b.WriteByte('\n')
		}
		out[part[0].Input.(Input).Name] = b.String()
	}
	return out
}
