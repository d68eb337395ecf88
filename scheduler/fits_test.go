package scheduler

import (
	"errors"
	"strings"
	"testing"

	pb "berth/proto/berth/v1"
)

// TestFitsAtCommit: the commit step re-checks a decision against the node
// as it is now, and the tasks it accepts count against the next ones.
func TestFitsAtCommit(t *testing.T) {
	t.Parallel()
	n := node("n1")
	live := []*pb.Task{
		task("db", 1, on("n1"), reserve(2*cpu, 0)),
		task("db", 2, on("n2"), reserve(2*cpu, 0)), // another node's: ignored
	}
	s := NewNodeState(n, live)
	web1, web2 := task("web", 1, reserve(2*cpu, 0)), task("web", 2, reserve(2*cpu, 0))
	if err := s.Fits(web1); err != nil {
		t.Fatalf("web.1: %v", err)
	}
	s.Add(web1)
	err := s.Fits(web2)
	var nf *NoFitError
	if !errors.As(err, &nf) || nf.Reason != "insufficient cpu" || nf.NodeID != "n1" || nf.TaskID != "web.2" {
		t.Fatalf("web.2: err = %v, want insufficient cpu", err)
	}
	if want := "task web.2 does not fit node n1: insufficient cpu"; err.Error() != want {
		t.Errorf("message = %q, want %q", err, want)
	}
}

func TestFitsReasons(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		node *pb.Node
		live []*pb.Task
		task *pb.Task
		want string
	}{
		{"fits", node("n1"), nil, task("web", 1), ""},
		{"went down", node("n1", withState(pb.NodeStatus_STATE_DOWN)), nil, task("web", 1), "node not ready"},
		{"drained since", node("n1", withAvail(pb.NodeSpec_AVAILABILITY_DRAIN)), nil, task("web", 1), "node drained"},
		{"label changed", node("n1", withLabel("zone", "b")), nil, task("web", 1, constraints("node.labels.zone==a")),
			"constraint node.labels.zone==a not met"},
		{"port taken", node("n1"), []*pb.Task{task("api", 1, on("n1"), hostPort80)}, task("web", 1, hostPort80),
			"host port 80/tcp already in use"},
		{"replicas", node("n1"), []*pb.Task{task("web", 2, on("n1"))}, task("web", 1, maxPerNode(1)),
			"max replicas per node (1) reached"},
		{"memory", node("n1"), []*pb.Task{task("db", 1, on("n1"), reserve(0, 8*gib))}, task("web", 1, reserve(0, 1)),
			"insufficient memory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Fits(tc.node, tc.live, tc.task)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Fits = %v, want nil", err)
				}
				return
			}
			var nf *NoFitError
			if !errors.As(err, &nf) || nf.Reason != tc.want {
				t.Fatalf("Fits = %v, want reason %q", err, tc.want)
			}
		})
	}
}

func TestFitsBadConstraint(t *testing.T) {
	t.Parallel()
	err := Fits(node("n1"), nil, task("web", 1, constraints("zone=a")))
	var nf *NoFitError
	if err == nil || errors.As(err, &nf) || !strings.Contains(err.Error(), "invalid placement") {
		t.Fatalf("Fits = %v, want an invalid placement error", err)
	}
}
