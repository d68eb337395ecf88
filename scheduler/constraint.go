package scheduler

import (
	"fmt"
	"regexp"
	"strings"

	pb "berth/proto/berth/v1"
)

// Constraint is one parsed placement constraint, e.g. node.labels.zone!=b.
type Constraint struct {
	// Key is the node attribute: node.id, node.hostname, node.role,
	// node.platform.os, node.platform.arch or node.labels.NAME.
	Key   string
	Equal bool
	Value string
}

// String renders the constraint as a user writes it.
func (c Constraint) String() string {
	op := "!="
	if c.Equal {
		op = "=="
	}
	return c.Key + op + c.Value
}

const labelPrefix = "node.labels."

var (
	constraintRE = regexp.MustCompile(`^\s*([a-zA-Z0-9_.\-]+)\s*(==|!=)\s*(\S.*?)\s*$`)
	fixedKeys    = map[string]bool{"node.id": true, "node.hostname": true, "node.role": true, "node.platform.os": true, "node.platform.arch": true}
)

// ParseConstraint parses "KEY==VALUE" or "KEY!=VALUE".
func ParseConstraint(s string) (Constraint, error) {
	m := constraintRE.FindStringSubmatch(s)
	if m == nil {
		return Constraint{}, fmt.Errorf("constraint %q: want KEY==VALUE or KEY!=VALUE, e.g. node.labels.zone==a", s)
	}
	key := strings.ToLower(m[1])
	if !fixedKeys[key] {
		if !strings.HasPrefix(key, "node.labels.") || len(key) == len("node.labels.") {
			return Constraint{}, fmt.Errorf("constraint %q: unknown key %q; use node.id, node.hostname, node.role, node.platform.os, node.platform.arch or node.labels.NAME", s, m[1])
		}
		key = "node.labels." + m[1][len("node.labels."):] // label names keep their case
	}
	if key == "node.role" && m[3] != "manager" && m[3] != "worker" {
		return Constraint{}, fmt.Errorf("constraint %q: node.role is manager or worker", s)
	}
	return Constraint{Key: key, Equal: m[2] == "==", Value: m[3]}, nil
}

// ParseConstraints parses every constraint, stopping at the first bad one.
func ParseConstraints(ss []string) ([]Constraint, error) {
	out := make([]Constraint, 0, len(ss))
	for _, s := range ss {
		c, err := ParseConstraint(s)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// Matches reports whether node n satisfies c. Values compare without regard
// to case, as Docker's do; a node without the label fails == and passes !=;
// node.platform.arch treats amd64/x86_64 and arm64/aarch64 as one.
func (c Constraint) Matches(n *pb.Node) bool {
	return c.match(newNodeInfo(n))
}

// MatchesAll reports whether node n satisfies every constraint in cs; the
// global orchestrator uses it to decide which nodes get a task.
func MatchesAll(cs []Constraint, n *pb.Node) bool {
	ni := newNodeInfo(n)
	for _, c := range cs {
		if !c.match(ni) {
			return false
		}
	}
	return true
}

func (c Constraint) match(n *nodeInfo) bool {
	var have string
	switch c.Key {
	case "node.id":
		have = n.id
	case "node.hostname":
		have = n.hostname
	case "node.role":
		have = n.role
	case "node.platform.os":
		have = n.os
	case "node.platform.arch":
		return normalArch(n.arch) == normalArch(c.Value) == c.Equal
	default:
		v, ok := n.labels[c.Key[len(labelPrefix):]]
		if !ok {
			return !c.Equal
		}
		have = v
	}
	return strings.EqualFold(have, c.Value) == c.Equal
}

// normalArch folds the common spellings of an architecture into Go's names.
func normalArch(a string) string {
	switch a = strings.ToLower(a); a {
	case "x86_64", "x86-64":
		return "amd64"
	case "aarch64":
		return "arm64"
	}
	return a
}
