package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// TestNetworkCommands: create, ls, inspect and rm against a real manager;
// rm refuses a network a service uses, naming the service.
func TestNetworkCommands(t *testing.T) {
	dir := startManager(t)
	run := func(args ...string) (string, error) { return berth(t, append([]string{"--tls-dir", dir}, args...)...) }
	await.NoError(t, 20*time.Second, func() error {
		_, err := run("network", "create", "--label", "tier=back", "back")
		return err
	}, "berth network create back")
	if _, err := run("network", "create", "--subnet", "192.168.50.0/24", "front"); err != nil {
		t.Fatal(err)
	}
	_, err := run("network", "create", "--subnet", "192.168.50.128/25", "clash")
	if err == nil || !strings.Contains(err.Error(), `overlaps 192.168.50.0/24 of network "front"`) {
		t.Fatalf("overlapping subnet: %v", err)
	}

	out, err := run("network", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"back", "overlay", "tier=back", "front", "192.168.50.0/24", "192.168.50.1"} {
		if !strings.Contains(out, want) {
			t.Errorf("network ls does not show %q:\n%s", want, out)
		}
	}

	out, err = run("network", "inspect", "front")
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Subnet string `json:"subnet"`
		Vni    uint32 `json:"vni"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || got[0].Subnet != "192.168.50.0/24" || got[0].Vni == 0 {
		t.Fatalf("network inspect front: %v\n%s", err, out)
	}

	if _, err := run("service", "create", "-d", "--name", "api", "--network", "name=back,alias=apidb", "--network", "front", "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	// The service gets a VIP on each network; its spec keeps the alias.
	await.True(t, 20*time.Second, func() bool {
		out, _ := run("service", "inspect", "api")
		return strings.Count(out, `"network_id"`) == 2 && strings.Contains(out, "192.168.50.") && strings.Contains(out, `"apidb"`)
	}, "service inspect api shows two VIPs and the alias")
	if _, err := run("network", "rm", "back"); err == nil || !strings.Contains(err.Error(), "used by service api") {
		t.Fatalf("rm of a network in use: %v", err)
	}
	if _, err := run("service", "rm", "api"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("network", "rm", "back", "front"); err != nil {
		t.Fatalf("rm of unused networks: %v", err)
	}
	await.True(t, 20*time.Second, func() bool { out, _ := run("network", "ls"); return strings.Contains(out, "default") }, "the default network is listed")
	if _, err := run("network", "rm", "default"); err == nil || !strings.Contains(err.Error(), "cannot be removed") {
		t.Fatalf("rm of the default network: %v", err)
	}
	out, _ = run("network", "ls")
	if strings.Contains(out, "back") || strings.Contains(out, "front") {
		t.Fatalf("removed networks still listed:\n%s", out)
	}
}

// TestNetworkCreateAttachable: --attachable is shown in the help, stored,
// listed, and inspect lists the network's standalone containers (none).
func TestNetworkCreateAttachable(t *testing.T) {
	help, err := berth(t, "network", "create", "--help")
	if err != nil || !strings.Contains(help, "--attachable") || !strings.Contains(help, "berth-agent run --network") {
		t.Fatalf("network create --help does not explain --attachable (%v):\n%s", err, help)
	}
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	await.NoError(t, 20*time.Second, func() error {
		_, err := run("network", "create", "--attachable", "front")
		return err
	}, "berth network create --attachable front")
	out, err := run("network", "ls", "--format", "{{.Name}} {{.Attachable}}")
	if err != nil || !strings.Contains(out, "front true") {
		t.Fatalf("network ls does not show front as attachable (%v):\n%s", err, out)
	}
	out, err = run("network", "inspect", "front")
	if err != nil {
		t.Fatal(err)
	}
	var got []struct {
		Spec struct {
			Attachable bool `json:"attachable"`
		} `json:"spec"`
		Containers []any `json:"containers"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil || len(got) != 1 || !got[0].Spec.Attachable || got[0].Containers == nil {
		t.Fatalf("network inspect front: %v; want attachable and an empty containers list:\n%s", err, out)
	}
	if out, err := run("network", "inspect", "--format", "{{.Spec.Attachable}} {{len .Containers}}", "front"); err != nil || strings.TrimSpace(out) != "true 0" {
		t.Fatalf("network inspect --format: %q, %v", out, err)
	}

	// A node's agent attaches a standalone container (berth-agent run
	// --network front --network-alias www): inspect lists it, rm is refused
	// naming it and its node, no task list shows it; detached, rm goes.
	w := startFakeWorker(t, bundle, "box-host", &pb.ResourceSet{NanoCpus: 1e9, MemoryBytes: 1 << 30})
	att, err := w.disp.AttachNetwork(t.Context(), &pb.AttachNetworkRequest{ContainerId: "web",
		Networks: []*pb.NetworkAttachment{{Target: "front", Aliases: []string{"www"}}}})
	if err != nil {
		t.Fatal(err)
	}
	addr := att.GetTask().GetNetworks()[0].GetAddresses()[0]
	out, err = run("network", "inspect", "--format", "{{range .Containers}}{{.Name}} {{.Node}} {{.Address}}{{end}}", "front")
	if err != nil || strings.TrimSpace(out) != "web box-host "+addr {
		t.Fatalf("network inspect lists %q (%v); want web on box-host at %s", out, err, addr)
	}
	if _, err := run("network", "rm", "front"); err == nil || !strings.Contains(err.Error(), "has standalone container attached: web on box-host") {
		t.Fatalf("rm of a network with a container on it: %v", err)
	}
	for _, args := range [][]string{{"node", "ps", w.id}, {"service", "ls"}} {
		if out, err := run(args...); err != nil || strings.Contains(out, "web") {
			t.Errorf("%v shows the standalone container (%v):\n%s", args, err, out)
		}
	}
	if _, err := w.disp.DetachNetwork(t.Context(), &pb.DetachNetworkRequest{AttachmentId: att.GetTask().GetId()}); err != nil {
		t.Fatal(err)
	}
	if _, err := run("network", "rm", "front"); err != nil {
		t.Fatalf("rm once the container left: %v", err)
	}
}
