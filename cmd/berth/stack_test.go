package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"berth/internal/await"
	pb "berth/proto/berth/v1"
)

// stackFile is the application of TestStackCommands: a web front end
// publishing a port, an API and a database with a named volume, front and
// back networks, a secret, health checks and update_config.
const stackFile = `
services:
  web:
    image: busybox:latest
    command: httpd -f -p 80
    ports: ["%[1]d:80"]
    networks: [front]
    configs:
      - source: site
        target: /etc/httpd.conf
    healthcheck:
      test: ["CMD", "true"]
      interval: 2s
  api:
    image: ${API_IMAGE:-busybox:1.36}
    command: sleep 1000
    networks: [front, back]
    secrets: [db_password]
    deploy:
      replicas: 2
      update_config:
        parallelism: 1
        order: start-first
  db:
    image: busybox:latest
    command: sleep 1000
    volumes: [dbdata:/var/lib/db]
    networks:
      back:
        aliases: [database]
    secrets:
      - source: db_password
        target: password
        mode: 0400
networks:
  front: {}
  back: {}
volumes:
  dbdata: {}
secrets:
  db_password:
    file: ./db_password.txt
configs:
  site:
    file: ./httpd.conf
`

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// stackServicesJSON lists a stack's services with `stack services --format json`.
func stackServicesJSON(t *testing.T, run func(...string) (string, error), name string) map[string]*pb.Service {
	t.Helper()
	out, err := run("stack", "services", name, "--format", "json")
	if err != nil {
		t.Fatalf("stack services %s: %v", name, err)
	}
	svcs := map[string]*pb.Service{}
	for _, raw := range jsonArray(t, out) {
		var s pb.Service
		if err := protojson.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		svcs[s.GetSpec().GetAnnotations().GetName()] = &s
	}
	return svcs
}

func versions(svcs map[string]*pb.Service) map[string]uint64 {
	out := map[string]uint64{}
	for n, s := range svcs {
		out[n] = s.GetSpecVersion()
	}
	return out
}

// TestStackCommands: stack deploy, ls, services, ps, config and rm against
// a real manager. A re-deploy of the same file calls no update; changing
// the API's image updates the API alone; a file berth cannot honour (an
// invalid key, --strict with an unsupported one) changes nothing; rm
// removes what the stack made and leaves an external network.
func TestStackCommands(t *testing.T) {
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	await.NoError(t, 20*time.Second, func() error { _, err := run("stack", "ls"); return err }, "berth stack ls")
	dir := t.TempDir()
	writeFile(t, dir, "db_password.txt", "s3cret")
	writeFile(t, dir, "httpd.conf", "H:/www\n")
	port := 20000 + os.Getpid()%20000
	file := writeFile(t, dir, "compose.yaml", fmt.Sprintf(stackFile, port))

	out, err := run("stack", "deploy", "-c", file, "--detach", "shop")
	if err != nil {
		t.Fatalf("deploy: %v\n%s", err, out)
	}
	for _, want := range []string{"Created network shop_front", "Created network shop_back", "Created secret shop_db_password",
		"Created config shop_site", "Created service shop_api", "Created service shop_db", "Created service shop_web"} {
		if !strings.Contains(out, want) {
			t.Errorf("deploy output lacks %q:\n%s", want, out)
		}
	}
	svcs := stackServicesJSON(t, run, "shop")
	if len(svcs) != 3 {
		t.Fatalf("services: %v", svcs)
	}
	db := svcs["shop_db"].GetSpec()
	if db.GetAnnotations().GetLabels()["com.docker.stack.namespace"] != "shop" || db.GetTask().GetContainer().GetMounts()[0].GetSource() != "shop_dbdata" ||
		db.GetTask().GetContainer().GetSecrets()[0].GetFileName() != "password" || len(db.GetNetworks()) != 1 {
		t.Errorf("shop_db: %v", db)
	}
	if refs := svcs["shop_web"].GetSpec().GetTask().GetContainer().GetConfigs(); len(refs) != 1 || refs[0].GetConfigName() != "shop_site" || refs[0].GetFileName() != "/etc/httpd.conf" {
		t.Errorf("shop_web configs: %v", refs)
	}
	if out, err := run("config", "inspect", "shop_site"); err != nil || !strings.Contains(out, "com.docker.stack.namespace") {
		t.Errorf("config inspect shop_site: %v\n%s", err, out)
	}
	if got := svcs["shop_web"].GetSpec().GetEndpoint().GetPorts()[0].GetPublishedPort(); got != uint32(port) {
		t.Errorf("web publishes %d, want %d", got, port)
	}
	ls, err := run("stack", "ls", "--format", "json")
	var stacks []map[string]any
	if err != nil || json.Unmarshal([]byte(ls), &stacks) != nil || len(stacks) != 1 || stacks[0]["name"] != "shop" ||
		stacks[0]["services"] != 3.0 || stacks[0]["networks"] != 2.0 || stacks[0]["secrets"] != 1.0 {
		t.Fatalf("stack ls: %v\n%s", err, ls)
	}

	// The same file again: nothing is updated.
	before := versions(svcs)
	out, err = run("stack", "deploy", "-c", file, "--detach", "shop")
	if err != nil || strings.Count(out, "Unchanged service") != 3 || strings.Contains(out, "Created") || strings.Contains(out, "Updated") {
		t.Fatalf("re-deploy: %v\n%s", err, out)
	}
	if after := versions(stackServicesJSON(t, run, "shop")); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("re-deploy changed services: %v, was %v", after, before)
	}

	// A service scaled by hand keeps its scale when its file gives no
	// replicas: db is left alone.
	if out, err := run("service", "scale", "--detach", "shop_db=3"); err != nil {
		t.Fatalf("scale: %v\n%s", err, out)
	}
	before = versions(stackServicesJSON(t, run, "shop"))
	out, err = run("stack", "deploy", "-c", file, "--detach", "shop")
	if err != nil || !strings.Contains(out, "Unchanged service shop_db") {
		t.Fatalf("re-deploy after scale: %v\n%s", err, out)
	}
	if svcs := stackServicesJSON(t, run, "shop"); svcs["shop_db"].GetSpec().GetReplicas() != 3 {
		t.Errorf("db has %d replicas after the re-deploy, want 3 as scaled", svcs["shop_db"].GetSpec().GetReplicas())
	}

	// A new API image (from the environment) updates the API alone.
	t.Setenv("API_IMAGE", "busybox:1.37")
	out, err = run("stack", "deploy", "-c", file, "--detach", "shop")
	if err != nil || !strings.Contains(out, "Updated service shop_api") || strings.Count(out, "Unchanged service") != 2 {
		t.Fatalf("deploy a new API image: %v\n%s", err, out)
	}
	svcs = stackServicesJSON(t, run, "shop")
	after := versions(svcs)
	if after["shop_api"] == before["shop_api"] || after["shop_web"] != before["shop_web"] || after["shop_db"] != before["shop_db"] {
		t.Errorf("versions after the API update: %v, were %v", after, before)
	}
	if img := svcs["shop_api"].GetSpec().GetTask().GetContainer().GetImage(); img != "busybox:1.37" {
		t.Errorf("api image %s", img)
	}
	before = after

	// Bad files change nothing: an unsupported key with --strict, and an
	// invalid key (with its place in the file).
	bad := writeFile(t, dir, "bad.yaml", "services:\n  web:\n    image: busybox\n    build: .\n")
	if out, err := run("stack", "deploy", "-c", bad, "--strict", "--detach", "shop"); err == nil ||
		!strings.Contains(err.Error(), `bad.yaml:4: service "web": ignoring unsupported option: build`) {
		t.Errorf("--strict: %v\n%s", err, out)
	}
	invalid := writeFile(t, dir, "invalid.yaml", "services:\n  web:\n    image: busybox\n    deploy:\n      replicas: -1\n")
	if _, err := run("stack", "deploy", "-c", invalid, "--detach", "shop"); err == nil || !strings.Contains(err.Error(), "invalid.yaml:5:7: services.web.deploy.replicas") {
		t.Errorf("invalid file: %v", err)
	}
	if now := versions(stackServicesJSON(t, run, "shop")); fmt.Sprint(now) != fmt.Sprint(before) {
		t.Fatalf("a refused file changed services: %v, were %v", now, before)
	}

	// stack ps lists the tasks of all three services; config prints the
	// merged file with variables replaced.
	out, err = run("stack", "ps", "shop", "--format", "json")
	if err != nil || len(jsonArray(t, out)) < 4 {
		t.Errorf("stack ps: %v\n%s", err, out)
	}
	if out, err := run("stack", "ps", "shop"); err != nil || !strings.Contains(out, "shop_api.1") || !strings.Contains(out, "shop_db.1") {
		t.Errorf("stack ps: %v\n%s", err, out)
	}
	if out, err := run("stack", "ls"); err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "shop ") {
		t.Errorf("stack ls: %v\n%s", err, out)
	}
	if out, err := run("stack", "services", "shop"); err != nil || !strings.Contains(out, "shop_web") || !strings.Contains(out, "busybox:1.37") {
		t.Errorf("stack services: %v\n%s", err, out)
	}
	if out, err := run("stack", "ls", "-q", "--filter", "name=sh"); err != nil || out != "shop\n" {
		t.Errorf("stack ls -q --filter name=sh: %v %q", err, out)
	}
	if out, err := run("stack", "ls", "-q", "--filter", "name=x"); err != nil || out != "" {
		t.Errorf("stack ls -q --filter name=x: %v %q", err, out)
	}
	if out, err := run("stack", "services", "-q", "--filter", "name=shop_w", "shop"); err != nil || len(strings.Fields(out)) != 1 {
		t.Errorf("stack services -q --filter name=shop_w: %v %q", err, out)
	}
	if out, err := run("stack", "ps", "-q", "--filter", "name=shop_db", "shop"); err != nil || len(strings.Fields(out)) != 3 {
		t.Errorf("stack ps -q --filter name=shop_db (3 replicas): %v %q", err, out)
	}
	if _, err := run("stack", "ps", "nosuch"); err == nil || !strings.Contains(err.Error(), "nothing found in stack nosuch") {
		t.Errorf("ps of a stack that does not exist: %v", err)
	}
	out, err = run("stack", "config", "-c", file, "shop")
	if err != nil || !strings.Contains(out, "image: busybox:1.37") || !strings.Contains(out, "name: shop_front") {
		t.Errorf("stack config: %v\n%s", err, out)
	}
	out, err = run("stack", "rm", "shop")
	if err != nil || !strings.Contains(out, "Removed config shop_site") {
		t.Fatalf("stack rm: %v\n%s", err, out)
	}
	if out, err := run("config", "ls", "-q"); err != nil || out != "" {
		t.Errorf("configs after stack rm: %v %q", err, out)
	}
}

// TestStackPartialDeployPruneAndRemove: a deploy that fails part-way (a
// port another service holds) says what was applied and what was not; a
// re-run after the cause is gone finishes it without touching what was
// done. --prune removes a service gone from the file. rm removes the
// stack's services, networks and secrets, and leaves the external network
// and the service outside the stack alone.
func TestStackPartialDeployPruneAndRemove(t *testing.T) {
	bundle := startManager(t)
	run := func(args ...string) (string, error) {
		return berth(t, append([]string{"--tls-dir", bundle}, args...)...)
	}
	await.NoError(t, 20*time.Second, func() error { _, err := run("network", "create", "edge"); return err }, "berth network create")
	dir := t.TempDir()
	port := 20000 + (os.Getpid()+1)%20000
	if out, err := run("service", "create", "--detach", "--name", "blocker", "-p", fmt.Sprintf("%d:80", port), "busybox"); err != nil {
		t.Fatalf("service create: %v\n%s", err, out)
	}
	file := writeFile(t, dir, "compose.yaml", fmt.Sprintf(`
services:
  a:
    image: busybox
    networks: [inner, edge]
  b:
    image: busybox
  z:
    image: busybox
    ports: ["%d:80"]
networks:
  inner: {}
  edge:
    external: true
`, port))
	out, err := run("stack", "deploy", "-c", file, "--detach", "app")
	if err == nil || !strings.Contains(err.Error(), "create service app_z") ||
		!strings.Contains(err.Error(), "applied: create network app_default; create network app_inner; create service app_a; create service app_b") ||
		!strings.Contains(err.Error(), "not applied: create service app_z") {
		t.Fatalf("deploy with a taken port: %v\n%s", err, out)
	}
	if strings.Contains(err.Error(), "rpc error") {
		t.Errorf("the error shows gRPC's wrapping: %v", err)
	}
	t.Logf("the partial deploy says:\n%v", err)
	svcs := stackServicesJSON(t, run, "app")
	if len(svcs) != 2 {
		t.Fatalf("after the failed deploy: %v", svcs)
	}
	if _, err := run("service", "rm", "blocker"); err != nil {
		t.Fatal(err)
	}
	out, err = run("stack", "deploy", "-c", file, "--detach", "app")
	if err != nil || !strings.Contains(out, "Created service app_z") || strings.Count(out, "Unchanged service") != 2 || strings.Contains(out, "Created network") {
		t.Fatalf("re-run: %v\n%s", err, out)
	}

	// b leaves the file: kept without --prune, removed with it.
	smaller := writeFile(t, dir, "smaller.yaml", strings.Replace(string(must(os.ReadFile(file))), "  b:\n    image: busybox\n", "", 1))
	if out, err := run("stack", "deploy", "-c", smaller, "--detach", "app"); err != nil || len(stackServicesJSON(t, run, "app")) != 3 {
		t.Fatalf("deploy without b: %v\n%s", err, out)
	}
	if out, err := run("stack", "deploy", "-c", smaller, "--prune", "--detach", "app"); err != nil || !strings.Contains(out, "Removed service app_b") {
		t.Fatalf("deploy --prune: %v\n%s", err, out)
	}
	if svcs := stackServicesJSON(t, run, "app"); len(svcs) != 2 || svcs["app_b"] != nil {
		t.Fatalf("after --prune: %v", svcs)
	}

	out, err = run("stack", "rm", "app")
	if err != nil || !strings.Contains(out, "Removed service app_a") || !strings.Contains(out, "Removed network app_inner") || !strings.Contains(out, "Removed network app_default") {
		t.Fatalf("stack rm: %v\n%s", err, out)
	}
	if ls, err := run("stack", "ls", "--format", "json"); err != nil || strings.TrimSpace(ls) != "[]" {
		t.Errorf("stack ls after rm: %v %s", err, ls)
	}
	if nets, err := run("network", "ls"); err != nil || !strings.Contains(nets, "edge") || strings.Contains(nets, "app_") {
		t.Errorf("networks after rm: %v\n%s", err, nets)
	}
	if out, err := run("stack", "rm", "app"); err != nil || !strings.Contains(out, "nothing found in stack app") {
		t.Errorf("rm again: %v %s", err, out)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
