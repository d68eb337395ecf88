package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"berth/ca"
	"berth/deploy/stack"
	"berth/manager/controlapi"
	pb "berth/proto/berth/v1"
	"berth/store"
)

// scaleShape is a cluster for list tests: services of replicas tasks each,
// spread over nodes. Service i (from 0) has running(i) tasks running, the
// rest pending; every task is desired running.
type scaleShape struct{ services, replicas, nodes int }

func (s scaleShape) running(i int) int { return s.replicas/2 + i%(s.replicas/2) }
func (s scaleShape) tasks() int        { return s.services * s.replicas }

// startListCluster serves the real Control API over real gRPC with mutual
// TLS on loopback, over a store filled straight with the shape's nodes,
// services and tasks (no Raft, no loops, no containers), and writes a
// client bundle for the CLI. It returns the bundle's directory.
func startListCluster(tb testing.TB, shape scaleShape) string {
	tb.Helper()
	st := store.New(nil)
	fillStore(tb, st, shape)
	dir, creds := listBundle(tb)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(creds.ServerConfig())))
	pb.RegisterControlServer(srv, controlapi.New(controlapi.Config{Store: st, ClusterID: "c1"}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	tb.Cleanup(func() {
		srv.Stop()
		if err := <-done; err != nil {
			tb.Errorf("serve: %v", err)
		}
	})
	if err := os.WriteFile(filepath.Join(dir, bundleAddr), []byte(l.Addr().String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// listBundle makes a cluster CA, a manager certificate for the server and
// a client bundle in a fresh directory.
func listBundle(tb testing.TB) (string, *ca.Credentials) {
	tb.Helper()
	now := time.Now()
	root, err := ca.NewRoot("c1", now)
	if err != nil {
		tb.Fatal(err)
	}
	issue := func(id, role string) (certPEM, keyPEM []byte) {
		keyPEM, csr, err := ca.NewKeyAndCSR()
		if err != nil {
			tb.Fatal(err)
		}
		certPEM, err = root.Issue(ca.IssueRequest{CSRPEM: csr, NodeID: id, Role: role, Lifetime: time.Hour}, now)
		if err != nil {
			tb.Fatal(err)
		}
		return certPEM, keyPEM
	}
	mCert, mKey := issue("m1", ca.RoleManager)
	creds, err := ca.NewCredentials(root.CertPEM, mCert, mKey)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	cCert, cKey := issue("cli", ca.RoleClient)
	for name, b := range map[string][]byte{bundleCA: root.CertPEM, bundleCert: cCert, bundleKey: cKey} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			tb.Fatal(err)
		}
	}
	return dir, creds
}

// fillStore writes the shape's objects in transactions of a few thousand.
func fillStore(tb testing.TB, st *store.MemoryStore, shape scaleShape) {
	tb.Helper()
	ctx := context.Background()
	created := timestamppb.New(time.Now())
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(st.Update(ctx, func(tx store.Tx) error {
		for n := range shape.nodes {
			err := tx.CreateNode(&pb.Node{Id: nodeID(n), Role: pb.NodeSpec_ROLE_WORKER,
				Spec:        &pb.NodeSpec{Annotations: &pb.Annotations{Labels: map[string]string{"rack": fmt.Sprint(n % 2)}}},
				Description: &pb.NodeDescription{Hostname: fmt.Sprintf("host-%03d", n)},
				Status:      &pb.NodeStatus{State: pb.NodeStatus_STATE_READY}})
			if err != nil {
				return err
			}
		}
		return nil
	}))
	// Specs of a realistic size (~0.6 KB a task), so that all tasks together
	// are well over gRPC's 4 MiB message limit even at 10k.
	var env []string
	for k := range 8 {
		env = append(env, fmt.Sprintf("SETTING_%d=%s", k, strings.Repeat("x", 56)))
	}
	for i := range shape.services {
		labels := map[string]string{"tier": fmt.Sprint(i % 3)}
		if i < scaleStackSize {
			labels[stack.Namespace] = "app"
		}
		svc := &pb.Service{Id: serviceID(i), SpecVersion: 1, Spec: &pb.ServiceSpec{
			Annotations: &pb.Annotations{Name: fmt.Sprintf("svc-%03d", i), Labels: labels},
			Replicas:    proto.Int64(int64(shape.replicas)),
			Task:        &pb.TaskSpec{Container: &pb.ContainerSpec{Image: "registry.local/app:v1", Env: env}},
		}}
		must(st.Update(ctx, func(tx store.Tx) error {
			if err := tx.CreateService(svc); err != nil {
				return err
			}
			for slot := 1; slot <= shape.replicas; slot++ {
				state := pb.TaskState_TASK_STATE_PENDING
				if slot <= shape.running(i) {
					state = pb.TaskState_TASK_STATE_RUNNING
				}
				err := tx.CreateTask(&pb.Task{Id: fmt.Sprintf("t%03d%06d", i, slot), ServiceId: svc.Id, Slot: uint64(slot),
					NodeId: nodeID(slot % shape.nodes), Spec: svc.Spec.Task, SpecVersion: 1, DesiredState: pb.TaskState_TASK_STATE_RUNNING,
					Status: &pb.TaskStatus{State: state, Timestamp: created, Message: state.String()}})
				if err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// scaleStackSize of the shape's first services belong to stack "app".
const scaleStackSize = 2

func nodeID(n int) string    { return fmt.Sprintf("node%04d", n) }
func serviceID(i int) string { return fmt.Sprintf("svc%05d", i) }

// TestListsAtScale is issue #17's bounded list test at 10k tasks (make
// bench runs it at 100k before timing each command, see
// BenchmarkLists100k): every list command of the CLI runs against a store
// of services, nodes and tasks through the real Control API, each with the
// right counts, and no reply goes over gRPC's message limit (the client
// keeps its default 4 MiB receive limit, so an oversized reply fails).
func TestListsAtScale(t *testing.T) {
	shape := scaleShape{services: 10, replicas: 1000, nodes: 100}
	checkLists(t, startListCluster(t, shape), shape)
}

// checkLists runs every list command against a cluster of the shape.
func checkLists(t testing.TB, dir string, shape scaleShape) {
	t.Helper()
	cli := func(args ...string) (string, error) {
		root := newRootCmd()
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(append([]string{"--tls-dir", dir}, args...))
		err := root.ExecuteContext(context.Background())
		return out.String(), err
	}
	run := func(args ...string) []string {
		t.Helper()
		out, err := cli(args...)
		if err != nil {
			t.Fatalf("berth %v: %v", args, err)
		}
		return strings.Split(strings.TrimSpace(out), "\n")
	}
	rows := func(args ...string) int { return len(run(args...)) - 1 } // less the header
	lines := func(args ...string) int {
		if l := run(args...); len(l) > 1 || l[0] != "" {
			return len(l)
		}
		return 0
	}

	ls := run("service", "ls")
	if len(ls) != shape.services+1 {
		t.Fatalf("service ls: %d rows, want %d:\n%s", len(ls)-1, shape.services, strings.Join(ls, "\n"))
	}
	for i, row := range ls[1:] {
		want := fmt.Sprintf(" %d/%d ", shape.running(i), shape.replicas)
		if !strings.Contains(row, fmt.Sprintf("svc-%03d", i)) || !strings.Contains(row, want) {
			t.Errorf("service ls row %d: %q, want svc-%03d with replicas%s", i, row, i, want)
		}
	}
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"service", "ls", "-q"}, shape.services},
		{[]string{"service", "ls", "-q", "--filter", "mode=global"}, 0},
		{[]string{"service", "ls", "-q", "--filter", "mode=replicated", "--filter", "label=tier=1"}, (shape.services + 1) / 3},
		{[]string{"service", "ls", "-q", "--filter", "name=svc-00"}, min(shape.services, 10)},
		{[]string{"service", "ls", "-q", "--filter", "id=" + serviceID(3)}, 1},
		{[]string{"service", "ps", "-q", "svc-001"}, shape.replicas},
		{[]string{"service", "ps", "-q", "--filter", "desired-state=shutdown", "svc-001"}, 0},
		{[]string{"service", "ps", "-q", "--filter", "node=host-005", "svc-001"}, shape.replicas / shape.nodes},
		{[]string{"service", "ps", "-q", "--filter", "name=svc-001.7", "svc-001"}, 111}, // 7, 70-79, 700-799: Docker's prefix match
		{[]string{"service", "ps", "-q", "--filter", "id=t001000042", "svc-001"}, 1},
		{[]string{"node", "ls", "-q"}, shape.nodes},
		{[]string{"node", "ls", "-q", "--filter", "role=manager"}, 0},
		{[]string{"node", "ls", "-q", "--filter", "role=worker", "--filter", "label=rack=1"}, shape.nodes / 2},
		{[]string{"node", "ls", "-q", "--filter", "membership=pending"}, 0},
		{[]string{"node", "ls", "-q", "--filter", "name=host-00"}, 10},
		{[]string{"node", "ps", "-q", "host-005"}, shape.tasks() / shape.nodes},
		{[]string{"node", "ps", "-q", "--filter", "desired-state=shutdown", "host-005", "host-006"}, 0},
		{[]string{"node", "ps", "-q", "--filter", "name=svc-001.5", "host-005"}, 2}, // slots 5 and 505: a prefix
		{[]string{"stack", "ls", "-q"}, 1},
		{[]string{"stack", "services", "-q", "app"}, scaleStackSize},
		{[]string{"stack", "ps", "-q", "app"}, scaleStackSize * shape.replicas},
		{[]string{"stack", "ps", "-q", "--filter", "desired-state=running", "app"}, scaleStackSize * shape.replicas},
		{[]string{"network", "ls", "-q"}, 0},
		{[]string{"secret", "ls", "-q"}, 0},
		{[]string{"config", "ls", "-q"}, 0},
	} {
		if got := lines(c.args...); got != c.want {
			t.Errorf("berth %s: %d lines, want %d", strings.Join(c.args, " "), got, c.want)
		}
	}
	if n := rows("service", "ps", "svc-002"); n != shape.replicas {
		t.Errorf("service ps svc-002: %d rows, want %d", n, shape.replicas)
	}
	if n := rows("node", "ls"); n != shape.nodes {
		t.Errorf("node ls: %d rows, want %d", n, shape.nodes)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"service", "ls", "--filter", "foo=bar"}, `unknown filter key "foo"; accepted keys: id, name, label, mode`},
		{[]string{"service", "ls", "--filter", "mode=batch"}, "unknown mode; use one of global, replicated"},
		{[]string{"service", "ls", "--filter", "name"}, "want KEY=VALUE"},
		{[]string{"service", "ps", "--filter", "mode=global", "svc-001"}, "accepted keys: id, name, node, desired-state"},
		{[]string{"service", "ps", "--filter", "desired-state=gone", "svc-001"}, "use one of accepted, running, shutdown"},
		{[]string{"service", "ps", "--filter", "node=nosuch", "svc-001"}, "node=nosuch: no such node"},
		{[]string{"node", "ls", "--filter", "role=boss"}, "use one of manager, worker"},
		{[]string{"node", "ls", "--filter", "membership=maybe"}, "use accepted or pending"},
		{[]string{"network", "ls", "--filter", "driver=overlay"}, "accepted keys: id, name, label"},
		{[]string{"secret", "ls", "--filter", "driver=x"}, "accepted keys: id, name, label"},
	} {
		_, err := cli(c.args...)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("berth %s: %v, want an error saying %q", strings.Join(c.args, " "), err, c.want)
		}
	}
	checkTaskPages(t, dir, shape.tasks())
}

// checkTaskPages lists every task of the cluster through the RPC: each
// reply stays under half of gRPC's 4 MiB limit (plus one task), and the
// pages together hold every task once.
func checkTaskPages(t testing.TB, dir string, total int) {
	t.Helper()
	g := &globalOpts{tlsDir: dir}
	seen := map[string]bool{}
	pages, bytes := 0, 0
	err := g.control(context.Background(), func(ctx context.Context, c pb.ControlClient) error {
		token := ""
		for {
			r, err := c.ListTasks(ctx, &pb.ListTasksRequest{PageToken: token})
			if err != nil {
				return err
			}
			pages++
			size := proto.Size(r)
			if size > 3<<20 {
				t.Errorf("page %d is %d bytes", pages, size)
			}
			bytes += size
			for _, task := range r.GetTasks() {
				if seen[task.GetId()] {
					t.Errorf("task %s listed twice", task.GetId())
				}
				seen[task.GetId()] = true
			}
			if token = r.GetNextPageToken(); token == "" {
				return nil
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != total {
		t.Fatalf("pages hold %d tasks, want %d", len(seen), total)
	}
	// One reply with every task, as service ls used to fetch, could not
	// pass: the test would not show anything otherwise.
	if bytes <= 4<<20 {
		t.Fatalf("all tasks take %d bytes: the test's tasks are too small to need pages", bytes)
	}
	t.Logf("%d tasks, %d bytes, in %d pages", total, bytes, pages)
}

// TestListsAt100k is TestListsAtScale at issue #17's size: 100 services of
// 1,000 replicas. It is slow under the race detector, so make test runs
// it on its own without -race (BERTH_LISTS_100K=1); plain `go test ./...`
// skips it.
func TestListsAt100k(t *testing.T) {
	if os.Getenv("BERTH_LISTS_100K") == "" {
		t.Skip("set BERTH_LISTS_100K=1 (make test does, without -race)")
	}
	shape := scaleShape{services: 100, replicas: 1000, nodes: 100}
	checkLists(t, startListCluster(t, shape), shape)
}
