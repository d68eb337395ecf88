package faults

import (
	"fmt"
	"sort"
	"strings"

	"github.com/anishathalye/porcupine"
)

// Kind is what an operation does to one service of the registry.
type Kind int

// The operations of the registry model.
const (
	// Read is GetService by name.
	Read Kind = iota
	// Create is CreateService with a name and a value.
	Create
	// Update is a read-modify-write: UpdateService by name with the
	// version the client read, setting a new value.
	Update
	// Remove is RemoveService by name.
	Remove
)

func (k Kind) String() string {
	return [...]string{"read", "create", "update", "remove"}[k]
}

// Input is one operation on the service named Name. Value is what a
// create or update writes (unique per write, so a read names the write it
// saw).
type Input struct {
	Kind  Kind
	Name  string
	Value int
}

// Outcome classifies the answer to an operation.
type Outcome int

// Outcomes. Unknown is a call whose effect nobody can tell (a timeout, an
// unreachable leader): the model lets it take effect at any time after its
// call, or never.
const (
	// OK is success; a read's Output carries the value it saw.
	OK Outcome = iota
	// NotFound says the service did not exist.
	NotFound
	// Exists says a create found the name taken.
	Exists
	// Conflict says an update's version was stale: no effect.
	Conflict
	// Unknown is an operation of unknown effect.
	Unknown
)

func (o Outcome) String() string {
	return [...]string{"ok", "not-found", "exists", "conflict", "unknown"}[o]
}

// Output is the answer to an Input. Value is what a successful read saw.
type Output struct {
	Outcome Outcome
	Value   int
}

// entry is one service's state in the model: absent, or present holding
// the value of the last write.
type entry struct {
	present bool
	value   int
}

// Model returns the service registry as a sequential object, one service
// name per porcupine partition. An acknowledged create, update or remove
// is visible to every read that starts after it returns; a read sees
// exactly the last write linearized before it; operations of unknown
// outcome may take effect or not.
func Model() porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Partition: partitionByName,
		Init:      func() []interface{} { return []interface{}{entry{}} },
		Step: func(state, input, output interface{}) []interface{} {
			return step(state.(entry), input.(Input), output.(Output))
		},
		Equal: func(a, b interface{}) bool { return a.(entry) == b.(entry) },
		DescribeOperation: func(input, output interface{}) string {
			in, out := input.(Input), output.(Output)
			return fmt.Sprintf("%s(%s, %d) -> %s %d", in.Kind, in.Name, in.Value, out.Outcome, out.Value)
		},
		DescribeState: func(state interface{}) string {
			e := state.(entry)
			if !e.present {
				return "absent"
			}
			return fmt.Sprintf("value %d", e.value)
		},
	}
	return nm.ToModel()
}

// step returns the states the registry can be in after in answered out
// from state s; none if the answer is impossible.
func step(s entry, in Input, out Output) []interface{} {
	if out.Outcome == Unknown {
		if next, ok := apply(s, in); ok {
			return []interface{}{s, next}
		}
		return []interface{}{s}
	}
	switch {
	case out.Outcome == Conflict && in.Kind == Update:
		return []interface{}{s}
	case out.Outcome == NotFound && in.Kind != Create && !s.present:
		return []interface{}{s}
	case out.Outcome == Exists && in.Kind == Create && s.present:
		return []interface{}{s}
	case out.Outcome == OK && in.Kind == Read:
		if s.present && s.value == out.Value {
			return []interface{}{s}
		}
		return nil
	case out.Outcome == OK:
		if next, ok := apply(s, in); ok {
			return []interface{}{next}
		}
	}
	return nil
}

// apply is the effect of a write that succeeds on s; false when it cannot
// succeed there.
func apply(s entry, in Input) (entry, bool) {
	switch in.Kind {
	case Create:
		return entry{present: true, value: in.Value}, !s.present
	case Update:
		return entry{present: true, value: in.Value}, s.present
	case Remove:
		return entry{}, s.present
	}
	return s, true
}

// partitionByName splits a history into one per service name: names are
// independent objects, and small partitions keep the check fast.
func partitionByName(ops []porcupine.Operation) [][]porcupine.Operation {
	by := map[string][]porcupine.Operation{}
	for _, op := range ops {
		n := op.Input.(Input).Name
		by[n] = append(by[n], op)
	}
	names := make([]string, 0, len(by))
	for n := range by {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([][]porcupine.Operation, 0, len(by))
	for _, n := range names {
		out = append(out, by[n])
	}
	return out
}

// String is an operation for a log line.
func (in Input) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", in.Kind, in.Name)
	if in.Kind == Create || in.Kind == Update {
		fmt.Fprintf(&b, "=%d", in.Value)
	}
	return b.String()
}
