package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"berth/internal/await"
)

// TestServiceUpdateNetworks: --network-add and --network-rm change a
// service's networks and roll its tasks: every live task afterwards was
// made for the new networks, the old ones are shut down. Bad edits are
// refused and change nothing.
func TestServiceUpdateNetworks(t *testing.T) {
	dir := startManager(t)
	run := func(args ...string) (string, error) { return berth(t, append([]string{"--tls-dir", dir}, args...)...) }
	await.NoError(t, 20*time.Second, func() error {
		_, err := run("network", "create", "back")
		return err
	}, "berth network create back")
	if _, err := run("network", "create", "front"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("service", "create", "-d", "--name", "api", "--replicas", "2", "--update-parallelism", "0",
		"--network", "back", "busybox:latest"); err != nil {
		t.Fatal(err)
	}
	ids := map[string]string{}
	for _, n := range []string{"back", "front"} {
		out, err := run("network", "inspect", n)
		var got []struct{ ID string }
		if err != nil || json.Unmarshal([]byte(out), &got) != nil || len(got) != 1 {
			t.Fatalf("network inspect %s: %v\n%s", n, err, out)
		}
		ids[n] = got[0].ID
	}
	// liveNetworks is the networks each live task was made for.
	liveNetworks := func() ([][]string, error) {
		out, err := run("service", "ps", "--format", "json", "api")
		if err != nil {
			return nil, err
		}
		var tasks []struct {
			DesiredState string `json:"desired_state"`
			SpecNetworks struct {
				Attachments []struct {
					Target  string   `json:"target"`
					Aliases []string `json:"aliases"`
				} `json:"attachments"`
			} `json:"spec_networks"`
		}
		if err := json.Unmarshal([]byte(out), &tasks); err != nil {
			return nil, err
		}
		var live [][]string
		for _, task := range tasks {
			if task.DesiredState != "TASK_STATE_RUNNING" {
				continue
			}
			var nets []string
			for _, n := range task.SpecNetworks.Attachments {
				nets = append(nets, n.Target+strings.Join(n.Aliases, "+"))
			}
			live = append(live, nets)
		}
		return live, nil
	}
	awaitLive := func(want ...string) {
		t.Helper()
		await.NoError(t, 20*time.Second, func() error {
			live, err := liveNetworks()
			if err != nil {
				return err
			}
			if len(live) != 2 {
				return fmt.Errorf("%d live tasks, want 2", len(live))
			}
			for _, nets := range live {
				if !slices.Equal(nets, want) {
					return fmt.Errorf("live tasks made for %v, want %v", live, want)
				}
			}
			return nil
		}, "live tasks on %v", want)
	}
	awaitLive(ids["back"])

	// The allocator writes the service (its VIPs) too: an update that read
	// an older version is refused and is run again.
	update := func(args ...string) {
		t.Helper()
		await.NoError(t, 20*time.Second, func() error {
			_, err := run(append(append([]string{"service", "update", "-d"}, args...), "api")...)
			return err
		}, "service update %v", args)
	}
	update("--network-add", "name=front,alias=web")
	awaitLive(ids["back"], ids["front"]+"web")
	update("--network-rm", "back")
	awaitLive(ids["front"] + "web")

	for _, tc := range []struct{ flag, value, want string }{
		{"--network-rm", "back", "not attached to network back"},
		{"--network-add", "front", "already attached to network front"},
		{"--network-add", "nowhere", "network nowhere does not exist"},
	} {
		if _, err := run("service", "update", "-d", tc.flag, tc.value, "api"); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want an error saying %q", tc.flag, tc.value, err, tc.want)
		}
	}
	awaitLive(ids["front"] + "web")
}
