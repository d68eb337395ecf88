package faults

import (
	"math"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// op builds an operation of client c over [call, ret]; ret < 0 is never.
func op(c int, in Input, call, ret int64, out Output) porcupine.Operation {
	if ret < 0 {
		ret = math.MaxInt64
	}
	return porcupine.Operation{ClientId: c, Input: in, Call: call, Return: ret, Output: out}
}

func TestModelJudgesHistories(t *testing.T) {
	create := func(v int) Input { return Input{Kind: Create, Name: "s", Value: v} }
	update := func(v int) Input { return Input{Kind: Update, Name: "s", Value: v} }
	read := Input{Kind: Read, Name: "s"}
	remove := Input{Kind: Remove, Name: "s"}
	ok := Output{Outcome: OK}
	saw := func(v int) Output { return Output{Outcome: OK, Value: v} }
	tests := []struct {
		name string
		ops  []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"create then read sees it", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(1, read, 20, 30, saw(1))}, porcupine.Ok},
		{"acknowledged update lost", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, 30, ok), op(1, read, 40, 50, saw(1))}, porcupine.Illegal},
		{"read during the update may see either", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, 60, ok), op(1, read, 30, 40, saw(1)),
			op(1, read, 45, 50, saw(2))}, porcupine.Ok},
		{"a read cannot go back", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, 60, ok), op(1, read, 30, 40, saw(2)),
			op(1, read, 45, 50, saw(1))}, porcupine.Illegal},
		{"removed service read as absent", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, remove, 20, 30, ok), op(1, read, 40, 50, Output{Outcome: NotFound})}, porcupine.Ok},
		{"removed service still read", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, remove, 20, 30, ok), op(1, read, 40, 50, saw(1))}, porcupine.Illegal},
		{"duplicate create refused while present", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(1, create(2), 20, 30, Output{Outcome: Exists})}, porcupine.Ok},
		{"create acknowledged twice", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(1, create(2), 20, 30, ok)}, porcupine.Illegal},
		{"unknown update seen later", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, -1, Output{Outcome: Unknown}),
			op(1, read, 40, 50, saw(1)), op(1, read, 60, 70, saw(2))}, porcupine.Ok},
		{"unknown update never applied", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, -1, Output{Outcome: Unknown}),
			op(1, read, 60, 70, saw(1))}, porcupine.Ok},
		{"unknown update cannot be undone", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, -1, Output{Outcome: Unknown}),
			op(1, read, 40, 50, saw(2)), op(1, read, 60, 70, saw(1))}, porcupine.Illegal},
		{"conflict has no effect", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, 30, Output{Outcome: Conflict}),
			op(1, read, 40, 50, saw(1))}, porcupine.Ok},
		{"conflicting update applied anyway", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(0, update(2), 20, 30, Output{Outcome: Conflict}),
			op(1, read, 40, 50, saw(2))}, porcupine.Illegal},
		{"names are independent", []porcupine.Operation{
			op(0, create(1), 0, 10, ok), op(1, Input{Kind: Read, Name: "t"}, 20, 30, Output{Outcome: NotFound})}, porcupine.Ok},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(Model(), tt.ops, 10*time.Second); got != tt.want {
				t.Fatalf("check = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestFinalsAreTheUnsupersededAcknowledgedWrites(t *testing.T) {
	h := NewHistory()
	h.ops = []porcupine.Operation{
		op(0, Input{Kind: Create, Name: "a", Value: 1}, 0, 10, Output{Outcome: OK}),
		op(0, Input{Kind: Update, Name: "a", Value: 2}, 20, 40, Output{Outcome: OK}),
		op(1, Input{Kind: Update, Name: "a", Value: 3}, 30, 50, Output{Outcome: OK}),
		op(1, Input{Kind: Update, Name: "a", Value: 4}, 60, 70, Output{Outcome: Conflict}),
		op(0, Input{Kind: Create, Name: "b", Value: 5}, 0, 10, Output{Outcome: OK}),
		op(0, Input{Kind: Remove, Name: "b"}, 20, 30, Output{Outcome: OK}),
		op(0, Input{Kind: Create, Name: "c", Value: 6}, 0, -1, Output{Outcome: Unknown}),
		op(0, Input{Kind: Remove, Name: "d"}, 0, 10, Output{Outcome: NotFound}),
	}
	f := h.Finals()
	if got := f["a"]; len(got) != 2 || got[0].Value != 2 || got[1].Value != 3 {
		t.Errorf("finals of a = %v, want the two overlapping updates 2 and 3", got)
	}
	if got := f["b"]; len(got) != 1 || got[0].Outcome != NotFound {
		t.Errorf("finals of b = %v, want absent", got)
	}
	if _, ok := f["c"]; ok {
		t.Errorf("c has a write of unknown outcome and must be left to porcupine")
	}
	if got := f["d"]; len(got) != 1 || got[0].Outcome != NotFound {
		t.Errorf("finals of d = %v, want absent", got)
	}
}
