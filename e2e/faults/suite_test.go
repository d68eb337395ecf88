package faults

import (
	"context"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"google.golang.org/protobuf/proto"

	"berth/internal/e2ecluster"
	"berth/internal/etcdtest"
	"berth/internal/faults"
	pb "berth/proto/berth/v1"
)

// scenario is one fault pattern.
type scenario struct {
	name string
	// short puts the scenario in the short form (go test, make test).
	short bool
	// agents is how many agents the cluster has (default 2).
	agents int
	// before runs before the cluster starts, with its data directory.
	before func(r *run) error
	// inject injects the faults for about d, healing each as it goes;
	// it returns when the run's faults are over. The suite heals the
	// network again after it, whatever it did.
	inject func(ctx context.Context, r *run, d time.Duration) error
}

// run is one scenario on one backend.
type run struct {
	t       *testing.T
	backend string
	seed    uint64
	salt    uint64     // from the backend and scenario: each has its own choices
	rng     *rand.Rand // the fault schedule's choices
	dir     string
	c       *e2ecluster.Cluster
	w       *workload
	net     *netFaults

	mu      sync.Mutex
	faults  []string
	effects map[string][]time.Duration // what each fault did, how soon
}

// fault records a fault injected, for the report.
func (r *run) fault(format string, args ...any) {
	s := fmt.Sprintf(format, args...)
	r.t.Logf("fault: %s", s)
	r.mu.Lock()
	r.faults = append(r.faults, s)
	r.mu.Unlock()
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// backends are the store backends the suite runs on: both in the long
// form, else the one BERTH_TEST_STORE picks (make test runs the short form
// once on each).
func backends(t *testing.T) []string {
	if full() {
		return []string{"raft", "etcd"}
	}
	b, err := etcdtest.Store()
	if err != nil {
		t.Fatal(err)
	}
	return []string{b}
}

// names are the services the workload writes: hyphenated, so that no name
// is also a prefix of a (base-36) service ID.
var names = []string{"svc-a", "svc-b", "svc-c", "svc-d"}

func TestFaults(t *testing.T) {
	seed := baseSeed()
	t.Logf("seed %d (replay with -seed %d or BERTH_FAULTS_SEED=%d)", seed, seed, seed)
	fmt.Printf("faults: seed %d\n", seed)
	for _, backend := range backends(t) {
		for _, sc := range scenarios() {
			if !full() && !*allFlag && !sc.short {
				continue
			}
			t.Run(backend+"/"+sc.name, func(t *testing.T) { runScenario(t, backend, sc, seed) })
		}
	}
}

// durations are how long a scenario's faults last, and how long the
// cluster has to recover after they heal.
func durations() (faultFor, recoverIn time.Duration) {
	if full() {
		return 60 * time.Second, 2 * time.Minute
	}
	return 8 * time.Second, 90 * time.Second
}

func runScenario(t *testing.T, backend string, sc scenario, seed uint64) {
	r := start(t, backend, sc, seed)
	faultFor, recoverIn := durations()
	ctx := t.Context()
	stop := r.w.run(ctx, 3, seed^r.salt)
	injectErr := sc.inject(ctx, r, faultFor)
	healErr := r.net.heal(ctx)
	healed := time.Now()
	// The load stops with the faults, so that the cluster can settle to
	// a state the checks can hold it to.
	stop()
	if injectErr != nil || healErr != nil {
		t.Fatalf("inject faults: %v; heal: %v", injectErr, healErr)
	}
	row := r.verdict(ctx, sc.name, healed, recoverIn)
	addRow(row)
	t.Logf("%d operations (%d acked), recovered in %s, invariants %s, linearizable %s",
		row.Ops.Total, row.Ops.Acked, row.Recovery.Round(time.Millisecond), row.Invariants, row.Linearizable)
}

// start prepares a run of sc: its schedule from the seed, the cluster and
// the workload's clients.
func start(t *testing.T, backend string, sc scenario, seed uint64) *run {
	h := fnv.New64a()
	h.Write([]byte(backend + "/" + sc.name))
	r := &run{t: t, backend: backend, seed: seed, salt: h.Sum64(), dir: runDir(t), effects: map[string][]time.Duration{}}
	r.rng = rand.New(rand.NewPCG(seed, r.salt))
	if sc.before != nil {
		if err := sc.before(r); err != nil {
			t.Fatal(err)
		}
	}
	agents := sc.agents
	if agents == 0 {
		agents = 2
	}
	r.c = up(t, r.dir, backend, agents)
	r.net = &netFaults{hosts: r.c.Hosts}
	w, err := newWorkload(r.c, names)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.close)
	r.w = w
	r.canary()
	return r
}

// canaryReplicas is the size of the service the workload leaves alone:
// whatever the workload's services end at, the hosts hold containers the
// checks must account for, and which the faults must not lose.
const canaryReplicas = 3

// canary creates the service "canary" and waits for its tasks to run.
func (r *run) canary() {
	ctx, cancel := context.WithTimeout(r.t.Context(), 60*time.Second)
	defer cancel()
	spec := r.w.spec("canary", 0)
	spec.Replicas = proto.Int64(canaryReplicas)
	if _, err := r.w.control(0).CreateService(ctx, &pb.CreateServiceRequest{Spec: spec}); err != nil {
		r.t.Fatalf("create the canary service: %v", err)
	}
	if !until(ctx, func(ctx context.Context) bool { return r.checkOnce(ctx) == nil }) {
		r.t.Fatalf("the canary service does not settle: %v", r.checkOnce(ctx))
	}
}

// verdict checks the invariants (waiting up to recoverIn after healed for
// them to hold) and the history, and makes the run's report row.
func (r *run) verdict(ctx context.Context, scenario string, healed time.Time, recoverIn time.Duration) faults.Row {
	row := faults.Row{Scenario: scenario, Backend: r.backend, Seed: r.seed, Faults: summary(r.faults), Recovery: -1}
	if e := r.effectSummary(); e != "" {
		row.Faults += " (" + e + ")"
	}
	if err := r.awaitInvariants(ctx, recoverIn); err != nil {
		row.Invariants = "VIOLATED: " + err.Error()
		r.t.Errorf("invariants %s after the faults healed: %v", recoverIn, err)
	} else {
		row.Recovery = time.Since(healed)
		row.Invariants = "ok"
	}
	row.Ops = r.w.hist.Count()
	row.Ops.Failed += int(r.w.notSent.Load())
	row.Ops.Total += int(r.w.notSent.Load())
	row.Linearizable = r.checkHistory()
	return row
}

// runDir is where a run keeps its nodes' data and logs: a temporary
// directory, or one under -keep named for the test.
func runDir(t *testing.T) string {
	if *keepFlag == "" {
		return t.TempDir()
	}
	dir := filepath.Join(*keepFlag, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("data dirs and logs in %s", dir)
	return dir
}

// checkHistory runs porcupine on the run's history; on a violation it
// writes porcupine's visualization next to the test's logs and fails.
func (r *run) checkHistory() string {
	v := r.w.hist.Check(2 * time.Minute)
	switch v.Result {
	case porcupine.Ok:
		return "ok"
	case porcupine.Unknown:
		r.t.Errorf("linearizability check timed out on %d operations", len(r.w.hist.Ops()))
		return "timeout"
	}
	out := fmt.Sprintf("%s/porcupine-%s-%s-%d.html", os.TempDir(), r.backend, strings.ReplaceAll(r.t.Name(), "/", "_"), r.seed)
	if err := porcupine.VisualizePath(faults.Model(), v.Info, out); err == nil {
		r.t.Logf("porcupine visualization: %s", out)
	}
	for name, ops := range r.w.hist.Failing(time.Minute) {
		path := fmt.Sprintf("%s/faults-%s-%s-%d-%s.txt", os.TempDir(), r.backend, strings.ReplaceAll(r.t.Name(), "/", "_"), r.seed, name)
		if err := os.WriteFile(path, []byte(ops), 0o644); err == nil {
			r.t.Logf("operations on %s, not linearizable: %s", name, path)
		}
	}
	r.t.Errorf("history not linearizable (seed %d); see the visualization", r.seed)
	return "VIOLATED"
}

// summary joins the faults, collapsing repeats: "kill -9 leader ×5".
func summary(fs []string) string {
	var out []string
	count := map[string]int{}
	for _, f := range fs {
		if count[f] == 0 {
			out = append(out, f)
		}
		count[f]++
	}
	for i, f := range out {
		if count[f] > 1 {
			out[i] = fmt.Sprintf("%s ×%d", f, count[f])
		}
	}
	return strings.Join(out, "; ")
}

// up brings up 3 managers and the agents for t in dir, and tears them
// down when t ends; on failure it logs the tail of every node's log.
func up(t *testing.T, dir, backend string, agents int) *e2ecluster.Cluster {
	t.Helper()
	return e2ecluster.UpForTest(t, e2ecluster.Options{Managers: 3, Agents: agents, Bins: bins, Dir: dir, Store: backend})
}
