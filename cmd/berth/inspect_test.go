package main

import (
	"strings"
	"testing"
	"time"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestInspectAndPs: task inspect, node ps (of nodes named, or of all),
// service inspect --pretty, and --format as a Go template on inspect, ls
// and ps, against a real manager whose tasks are placed on two workers.
// A hostname two nodes share is ambiguous, and the error lists their IDs.
func TestInspectAndPs(t *testing.T) {
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	res := &pb.ResourceSet{NanoCpus: 2e9, MemoryBytes: 1 << 30}
	w1 := startFakeWorker(t, bundle, "w1", res)
	w2 := startFakeWorker(t, bundle, "w2", res)
	if _, err := run("service", "create", "-d", "--name", "web", "--replicas", "2", "--label", "team=a", "busybox:latest", "sleep", "1d"); err != nil {
		t.Fatal(err)
	}
	await.True(t, 20*time.Second, func() bool { return len(w1.assigned()) == 1 && len(w2.assigned()) == 1 }, "a task on each worker")
	task := w1.assigned()[0]

	out, err := run("node", "ps", "w1")
	if err != nil || strings.Count(out, "\n") != 2 || !strings.Contains(out, "web.") || !strings.Contains(out, " w1 ") || !strings.Contains(out, shortID(task.GetId())) {
		t.Errorf("node ps w1: %v\n%s", err, out)
	}
	out, err = run("node", "ps", "--format", "{{.Name}} {{.Node}} {{.DesiredState}}")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 2 || !strings.HasSuffix(lines[0], " running") ||
		!strings.HasPrefix(lines[0], "web.") || lines[0][len("web.x "):] == lines[1][len("web.x "):] {
		t.Errorf("node ps of every node, as a template: %v\n%s", err, out)
	}
	if _, err := run("node", "ps", "nope"); err == nil || !strings.Contains(err.Error(), `node "nope" not found`) {
		t.Errorf("node ps of no such node: %v", err)
	}

	out, err = run("task", "inspect", "--format", "{{.ServiceID}} {{.NodeID}} {{.Slot}} {{.Spec.Container.Image}}", task.GetId()[:10])
	if want := task.GetServiceId() + " " + w1.id; err != nil || !strings.HasPrefix(out, want) || !strings.HasSuffix(out, " busybox:latest\n") {
		t.Errorf("task inspect --format: %v %q, want %q...", err, out, want)
	}
	if out, err = run("task", "inspect", task.GetId()); err != nil || len(jsonArray(t, out)) != 1 || !strings.Contains(out, `"service_id"`) {
		t.Errorf("task inspect: %v\n%s", err, out)
	}

	for _, tc := range []struct{ cmd, format, want string }{
		{"service inspect web", "{{.Spec.Name}}", "web\n"},
		{"service inspect web", "{{.Spec.Labels.team}}/{{.Spec.Annotations.Name}} {{.Spec.Mode}}", "a/web SERVICE_MODE_REPLICATED\n"},
		{"service inspect web", "{{json .Spec.Annotations}}", `{"Labels":{"team":"a"},"Name":"web"}` + "\n"},
		{"service inspect web", "{{.Spec.Replicas}} {{.Spec.Task.Resources.Limits.NanoCpus}} {{.Spec.Update.Parallelism}} {{.Spec.Update.Delay}}", "2 0 1 <no value>\n"},
		{"service ls", "{{.Name}}:{{.Replicas}}:{{.Image}}", "web:0/2:busybox:latest\n"},
		{"service ls", `table {{.Name}}\t{{.Mode}}`, "NAME   MODE\nweb    replicated\n"},
	} {
		args := append(strings.Fields(tc.cmd), "--format", tc.format)
		if out, err := run(args...); err != nil || out != tc.want {
			t.Errorf("berth %s --format %s: %v %q, want %q", tc.cmd, tc.format, err, out, tc.want)
		}
	}
	if out, err := run("service", "inspect", "--pretty", "web"); err != nil || !strings.Contains(out, "Name:\t\tweb\n") || !strings.Contains(out, " Replicas:\t2\n") {
		t.Errorf("service inspect --pretty: %v\n%s", err, out)
	}
	for _, args := range [][]string{
		{"service", "inspect", "--format", "{{.Spec.Name", "web"},
		{"service", "inspect", "--format", "{{.Nope}}", "web"},
		{"node", "ls", "--format", "{{.Nope}}"},
	} {
		if _, err := run(args...); err == nil || !strings.Contains(err.Error(), "--format") {
			t.Errorf("berth %s: %v, want an error about --format", strings.Join(args, " "), err)
		}
	}

	// A second node named w1: the name no longer says which.
	w3 := startFakeWorker(t, bundle, "w1", res)
	_, err = run("node", "inspect", "w1")
	if err == nil || !strings.Contains(err.Error(), `node "w1" is ambiguous`) || !strings.Contains(err.Error(), w1.id) || !strings.Contains(err.Error(), w3.id) {
		t.Errorf("node inspect of a shared hostname: %v, want it ambiguous with both IDs", err)
	}
	if out, err := run("node", "inspect", "--format", "{{.Description.Hostname}}", w3.id); err != nil || out != "w1\n" {
		t.Errorf("node inspect by ID: %v %q", err, out)
	}
}

// TestCreateRefusesWhatNoNodeHolds: a CPU limit above every node's CPUs,
// or a reservation above every node's capacity, is refused at create
// with the largest node's figure; what the largest node holds is taken.
// A service created without --name is named after its image, and gets a
// unique name when that one is taken.
func TestCreateRefusesWhatNoNodeHolds(t *testing.T) {
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	startFakeWorker(t, bundle, "small", &pb.ResourceSet{NanoCpus: 1e9, MemoryBytes: 512 << 20})
	startFakeWorker(t, bundle, "big", &pb.ResourceSet{NanoCpus: 4e9, MemoryBytes: 2 << 30})
	for _, tc := range []struct{ flag, value, want string }{
		{"--limit-cpu", "8", "8 CPUs is more than any node has (the largest, big, has 4); lower --limit-cpu"},
		{"--reserve-cpu", "4.5", "4.5 CPUs is more than any node has (the largest, big, has 4); lower --reserve-cpu"},
		{"--reserve-memory", "3G", "3072 MiB is more memory than any node has (the largest, big, has 2048 MiB); lower --reserve-memory"},
	} {
		if _, err := run("service", "create", "-d", tc.flag, tc.value, "busybox"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("create %s %s: %v, want %q", tc.flag, tc.value, err, tc.want)
		}
		if _, err := run("service", "create", "-d", "--name", "x", "busybox"); err != nil {
			t.Fatal(err)
		}
		if _, err := run("service", "update", "-d", tc.flag, tc.value, "x"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("update %s %s: %v, want %q", tc.flag, tc.value, err, tc.want)
		}
		if _, err := run("service", "rm", "x"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := run("service", "create", "-d", "--name", "fits", "--limit-cpu", "4", "--reserve-memory", "2G", "busybox"); err != nil {
		t.Errorf("create with what the largest node has: %v", err)
	}

	// No --name: the image's name, then unique ones.
	var names []string
	for range 3 {
		out, err := run("service", "create", "-d", "registry.local:5000/team/app:v1")
		if err != nil {
			t.Fatal(err)
		}
		id := strings.Fields(out)[len(strings.Fields(out))-1]
		name, err := run("service", "inspect", "--format", "{{.Spec.Name}}", id)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, strings.TrimSpace(name))
		if len(names) > 1 && !strings.Contains(out, "a service is named app already: this one is "+names[len(names)-1]) {
			t.Errorf("create without --name printed %q, want it to say the name it took", out)
		}
	}
	if names[0] != "app" || !strings.HasPrefix(names[1], "app-") || !strings.HasPrefix(names[2], "app-") || names[1] == names[2] || len(names[1]) != len("app-")+6 {
		t.Errorf("services created without --name are named %q, want app, then app-XXXXXX twice, all different", names)
	}
	if _, err := run("service", "create", "-d", "--name", "app", "busybox"); err == nil || !strings.Contains(err.Error(), "app") {
		t.Errorf("create --name app when app exists: %v, want a refusal", err)
	}
}

// TestPortZeroShowsTheGivenPort: a service publishing a host-mode port
// as 0 shows, in service ls and inspect --pretty, the port its running
// task's node gave it, not 0. (An ingress port published as 0 gets a node
// port from the managers, on the service's endpoint, which is shown.)
func TestPortZeroShowsTheGivenPort(t *testing.T) {
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	w := startFakeWorker(t, bundle, "w1", &pb.ResourceSet{NanoCpus: 1e9, MemoryBytes: 1 << 30})
	if _, err := run("service", "create", "-d", "--name", "pub", "-p", "mode=host,published=0,target=8080", "busybox"); err != nil {
		t.Fatal(err)
	}
	if out, err := run("service", "ls", "--format", "{{.Ports}}"); err != nil || out != "*:?->8080/tcp\n" {
		t.Errorf("service ls before the task runs: %v %q", err, out)
	}
	await.True(t, 20*time.Second, func() bool { return len(w.assigned()) == 1 }, "the task is assigned")
	given := &pb.PortConfig{TargetPort: 8080, PublishedPort: 31234, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST}
	if err := w.reportStatus(w.assigned()[0].GetId(), &pb.TaskStatus{State: pb.TaskState_TASK_STATE_RUNNING, Ports: []*pb.PortConfig{given}}); err != nil {
		t.Fatal(err)
	}
	await.True(t, 20*time.Second, func() bool {
		out, err := run("service", "ls")
		return err == nil && strings.Contains(out, " *:31234->8080/tcp ")
	}, "service ls shows the port given")
	if out, err := run("service", "inspect", "--pretty", "pub"); err != nil || !strings.Contains(out, "Ports:\t\t*:31234->8080/tcp\n") {
		t.Errorf("service inspect --pretty: %v\n%s", err, out)
	}
}
