package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"berth/internal/await"
	"berth/internal/e2ecluster"
	pb "berth/proto/berth/v1"
)

// stackCompose is the application of TestStackOnRealHosts: a web front end
// publishing a port, an API on the front and back networks, and a
// database-like service (busybox httpd serving a file from its named
// volume) on the back network only, with a secret, a health check and
// update_config. %[1]s is the app image, %[2]s busybox.
const stackCompose = `
services:
  web:
    image: %[1]s
    ports:
      - target: 8080
        published: 8080
        mode: host
    networks: [front]
  api:
    image: %[1]s
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
        monitor: 1s
    networks: [front, back]
  db:
    image: %[2]s
    command: ["sh", "-c", "cat /run/secrets/db_password > /var/lib/db/index.html && exec httpd -f -p 8080 -h /var/lib/db"]
    volumes: [dbdata:/var/lib/db]
    secrets: [db_password]
    healthcheck:
      test: test -s /var/lib/db/index.html
      interval: 1s
      retries: 3
    deploy:
      endpoint_mode: dnsrr
    networks:
      back:
        aliases: [database]
networks:
  front: {}
  back: {}
volumes:
  dbdata: {}
secrets:
  db_password:
    file: ./db_password.txt
`

// TestStackOnRealHosts deploys a Compose file on real hosts: every service
// runs, web answers on its published port and resolves the API by name,
// a container on the front network reaches the API by name and one on the
// back network the database (by its alias too), the database is neither
// reachable nor resolvable from the front network, it is healthy and
// reads its secret into its volume. Deploying the same file again changes
// no task; a second file changing the API's image rolls out the API alone;
// stack rm leaves no service, network, secret, container or overlay
// device. api is reached through its virtual IP, db (endpoint_mode
// dnsrr) through its tasks' addresses.
func TestStackOnRealHosts(t *testing.T) {
	c := up(t, 1, 2, nil)
	ctx := t.Context()
	dir := t.TempDir()
	secret := fmt.Sprintf("stack-pw-%d", os.Getpid())
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("db_password.txt", secret)
	base := write("compose.yaml", fmt.Sprintf(stackCompose, c.Images.AppV1.Tag, c.Images.Busybox.Tag))
	v2 := write("api-v2.yaml", fmt.Sprintf("services:\n  api:\n    image: %s\n", c.Images.AppV2.Tag))

	out, err := c.CLI(ctx, "stack", "deploy", "-c", base, "shop")
	if err != nil {
		t.Fatalf("stack deploy: %v\n%s", err, out)
	}
	runningOn(t, c, "shop_web", 1)
	runningOn(t, c, "shop_api", 2)
	runningOn(t, c, "shop_db", 1)

	// web answers on its published port, on its node.
	web := liveTasks(t, c, "shop_web")[1]
	node := hostnames(t, c)[web.GetNodeId()]
	url := fmt.Sprintf("http://%s:8080/", agentNamed(t, c, node).Host.Addr)
	await.True(t, wait, func() bool {
		body, err := e2ecluster.Get(ctx, url)
		return err == nil && strings.Contains(body, "v1")
	}, "GET %s answers with the app", url)

	// db is healthy and serves the secret it copied into its volume.
	await.True(t, wait, func() bool {
		db := liveTasks(t, c, "shop_db")[1]
		return db != nil && db.GetStatus().GetContainer().GetHealth() == pb.ContainerStatus_HEALTH_HEALTHY
	}, "shop_db turns healthy")
	if got, _, err := cliOut(ctx, c, "exec", "shop_db", "--", "cat", "/var/lib/db/index.html"); err != nil || got != secret {
		t.Fatalf("db's volume holds %q (%v), want the secret", got, err)
	}

	// web itself resolves tasks.api to the API's tasks.
	lookup := fmt.Sprintf("http://%s:8080/?lookup=tasks.api", agentNamed(t, c, node).Host.Addr)
	apiAddrs := []string{addrOn(t, c, "shop_api", "shop_front", 1), addrOn(t, c, "shop_api", "shop_front", 2)}
	var view struct {
		DNS struct{ Addresses []string } `json:"dns"`
	}
	await.True(t, wait, func() bool {
		body, err := e2ecluster.Get(ctx, lookup)
		if err != nil || json.Unmarshal([]byte(body), &view) != nil {
			return false
		}
		got := slices.Sorted(slices.Values(view.DNS.Addresses))
		return slices.Equal(got, slices.Sorted(slices.Values(apiAddrs)))
	}, "web resolves tasks.api to the API's tasks %v (last: %v)", apiAddrs, view.DNS.Addresses)

	// Who reaches whom, by name and by address.
	dbAddr := addrOn(t, c, "shop_db", "shop_back", 1)
	fetchDB := func(host string) string {
		return fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 %s 8080 | grep -q %s`, host, secret)
	}
	probes := map[string]pb.TaskState{}
	for _, p := range []struct {
		name, net, script string
		want              pb.TaskState
	}{
		{"probe-front-api", "shop_front", get("api"), pb.TaskState_TASK_STATE_COMPLETE},
		{"probe-back-db", "shop_back", fetchDB("db"), pb.TaskState_TASK_STATE_COMPLETE},
		{"probe-back-database", "shop_back", fetchDB("database"), pb.TaskState_TASK_STATE_COMPLETE},
		{"probe-front-db-name", "shop_front", "nslookup api && ! nslookup db && ! nslookup database", pb.TaskState_TASK_STATE_COMPLETE},
		{"probe-front-db-addr", "shop_front", fetchDB(dbAddr), pb.TaskState_TASK_STATE_FAILED},
	} {
		client(t, c, p.name, p.net, node, p.script)
		probes[p.name] = p.want
	}
	for probe, want := range probes {
		if st := finalState(t, c, probe); st != want {
			t.Errorf("%s ended %s, want %s", probe, st, want)
		}
		if _, err := c.CLI(ctx, "service", "rm", probe); err != nil {
			t.Fatal(err)
		}
	}

	// The same file again: no task changes.
	before := stackTaskIDs(t, c, "shop_web", "shop_api", "shop_db")
	out, err = c.CLI(ctx, "stack", "deploy", "-c", base, "shop")
	if err != nil || strings.Count(out, "Unchanged service") != 3 {
		t.Fatalf("re-deploy: %v\n%s", err, out)
	}
	if after := stackTaskIDs(t, c, "shop_web", "shop_api", "shop_db"); !slices.Equal(after, before) {
		t.Fatalf("re-deploying the same file changed tasks:\n%v\nwere\n%v", after, before)
	}

	// A second file with the API's new image: the API rolls out, alone.
	webDB := stackTaskIDs(t, c, "shop_web", "shop_db")
	out, err = c.CLI(ctx, "stack", "deploy", "-c", base, "-c", v2, "shop")
	if err != nil || !strings.Contains(out, "Updated service shop_api") || strings.Count(out, "Unchanged service") != 2 {
		t.Fatalf("deploy with the new API image: %v\n%s", err, out)
	}
	runningOn(t, c, "shop_api", 2)
	for _, tk := range liveTasks(t, c, "shop_api") {
		if img := tk.GetSpec().GetContainer().GetImage(); img != c.Images.AppV2.Tag {
			t.Errorf("api task %s runs %s, want %s", tk.GetId(), img, c.Images.AppV2.Tag)
		}
	}
	if after := stackTaskIDs(t, c, "shop_web", "shop_db"); !slices.Equal(after, webDB) {
		t.Errorf("the API's update changed other tasks:\n%v\nwere\n%v", after, webDB)
	}

	out, err = c.CLI(ctx, "stack", "rm", "shop")
	if err != nil {
		t.Fatalf("stack rm: %v\n%s", err, out)
	}
	for _, args := range [][]string{{"service", "ls"}, {"network", "ls"}, {"secret", "ls"}, {"stack", "ls"}} {
		if out, err := c.CLI(ctx, args...); err != nil || strings.Contains(out, "shop") {
			t.Errorf("berth %s after stack rm: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	await.True(t, wait, func() bool {
		n, err := c.Containers()
		return err == nil && n["a1"]+n["a2"] == 0
	}, "no container left on the agents")
	for _, a := range c.Agents {
		await.True(t, wait, func() bool { return len(overlayLeft(t, a.Host.NetnsPath())) == 0 },
			"host %s keeps overlay links or nftables tables after stack rm", a.Name)
	}
}

func agentNamed(t *testing.T, c *e2ecluster.Cluster, name string) *e2ecluster.Node {
	t.Helper()
	for _, a := range c.Agents {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no agent %s", name)
	return nil
}

// addrOn is the address the running task of svc in slot has on network.
func addrOn(t *testing.T, c *e2ecluster.Cluster, svc, network string, slot uint64) string {
	t.Helper()
	id := stackNetworkID(t, c, network)
	for _, att := range liveTasks(t, c, svc)[slot].GetNetworks() {
		if att.GetNetworkId() == id && len(att.GetAddresses()) > 0 {
			addr, _, _ := strings.Cut(att.GetAddresses()[0], "/")
			return addr
		}
	}
	t.Fatalf("%s has no running task in slot %d on %s", svc, slot, network)
	return ""
}

// stackNetworkID is a network's ID, from network ls.
func stackNetworkID(t *testing.T, c *e2ecluster.Cluster, name string) string {
	t.Helper()
	out, err := c.CLI(t.Context(), "network", "ls")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[1] == name {
			return f[0]
		}
	}
	t.Fatalf("no network %s in\n%s", name, out)
	return ""
}

// stackTaskIDs lists the running tasks of services, sorted.
func stackTaskIDs(t *testing.T, c *e2ecluster.Cluster, svcs ...string) []string {
	t.Helper()
	var out []string
	for _, s := range svcs {
		for _, tk := range liveTasks(t, c, s) {
			out = append(out, s+"/"+tk.GetId())
		}
	}
	sort.Strings(out)
	return out
}
