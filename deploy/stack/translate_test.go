package stack

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/google/go-cmp/cmp"

	pb "berth/proto/berth/v1"
)

func read(t *testing.T, o Options) *Stack {
	t.Helper()
	s, err := Read(context.Background(), "shop", o, false)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func files(f ...string) Options {
	for i := range f {
		f[i] = filepath.Join("testdata", f[i])
	}
	return Options{Files: f}
}

func service(t *testing.T, s *Stack, name string) *pb.ServiceSpec {
	t.Helper()
	for _, svc := range s.Services {
		if svc.GetAnnotations().GetName() == name {
			return svc
		}
	}
	t.Fatalf("no service %s in %d services", name, len(s.Services))
	return nil
}

func diff(t *testing.T, what string, want, got proto.Message) {
	t.Helper()
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

func sec(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

var ns = map[string]string{Namespace: "shop"}

func withNS(kv ...string) map[string]string {
	m := map[string]string{Namespace: "shop"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestTranslateEveryKey: testdata/full uses every key berth maps; each
// lands in its field of the service, network and secret specs, with names
// prefixed by the stack and the namespace label on every object.
func TestTranslateEveryKey(t *testing.T) {
	o := files("full/compose.yaml")
	o.Env = []string{"API_TOKEN=tok", "FROM_SHELL=shell"}
	s := read(t, o)
	abs, _ := filepath.Abs("testdata/full/conf")
	web := &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: "shop_web", Labels: withNS("tier", "edge")},
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{
				Image:   "docker.io/library/nginx:1.27", // WEB_TAG from .env, REGISTRY's default
				Command: []string{"/docker-entrypoint.sh"},
				Args:    []string{"nginx", "-g", "daemon off;"},
				// environment wins over env_file; FROM_SHELL comes from the shell
				Env:      []string{"EMPTY=", "FROM_FILE=yes", "FROM_SHELL=shell", "MODE=production"},
				User:     "101:101",
				Workdir:  "/usr/share/nginx",
				Hostname: "web-host",
				Mounts: []*pb.Mount{
					{Type: pb.Mount_TYPE_VOLUME, Source: "shop_static", Target: "/usr/share/nginx/html", ReadOnly: true},
					{Type: pb.Mount_TYPE_BIND, Source: abs, Target: "/etc/nginx/conf.d"},
					{Type: pb.Mount_TYPE_TMPFS, Target: "/var/cache/nginx", TmpfsSizeBytes: 64 << 20},
					{Type: pb.Mount_TYPE_VOLUME, Source: "shop_static", Target: "/srv", ReadOnly: true},
					{Type: pb.Mount_TYPE_BIND, Source: "/etc/hostname", Target: "/etc/host-name", ReadOnly: true},
				},
				StopSignal:      "SIGQUIT",
				StopGracePeriod: sec(30 * time.Second),
				Healthcheck: &pb.HealthCheck{
					Test:     []string{"CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"},
					Interval: sec(5 * time.Second), Timeout: sec(2 * time.Second), Retries: 4,
					StartPeriod: sec(10 * time.Second), StartInterval: sec(time.Second),
				},
				Secrets: []*pb.SecretReference{
					{SecretName: "shop_site_key", FileName: "site_key"},
					{SecretName: "shop_api_token", FileName: "tokens/api", Uid: 101, Gid: 102, Mode: 0o400},
				},
				ReadOnly: true,
				Tty:      true,
				Labels:   withNS("team", "front"),
			},
			Resources: &pb.Resources{
				Limits:       &pb.ResourceSet{NanoCpus: 5e8, MemoryBytes: 128 << 20, Pids: 200},
				Reservations: &pb.ResourceSet{NanoCpus: 2.5e8, MemoryBytes: 64 << 20},
			},
			Restart: &pb.RestartPolicy{Condition: pb.RestartPolicy_CONDITION_ON_FAILURE, Delay: sec(2 * time.Second), MaxAttempts: 5, Window: sec(time.Minute)},
			Placement: &pb.Placement{
				Constraints:        []string{"node.role==worker", "node.labels.zone!=b"},
				Preferences:        []*pb.PlacementPreference{{SpreadDescriptor: "node.labels.zone"}},
				MaxReplicasPerNode: 2,
			},
		},
		Replicas: proto.Int64(3),
		Update: &pb.UpdateConfig{Parallelism: 2, Delay: sec(10 * time.Second), FailureAction: pb.UpdateConfig_FAILURE_ACTION_ROLLBACK,
			Monitor: sec(30 * time.Second), MaxFailureRatio: 0.25, Order: pb.UpdateConfig_ORDER_START_FIRST},
		Rollback: &pb.UpdateConfig{Parallelism: 0, FailureAction: pb.UpdateConfig_FAILURE_ACTION_CONTINUE},
		Endpoint: &pb.EndpointSpec{Ports: []*pb.PortConfig{
			{TargetPort: 80, PublishedPort: 8080},
			{Protocol: pb.PortConfig_PROTOCOL_UDP, TargetPort: 90, PublishedPort: 9000},
			{Protocol: pb.PortConfig_PROTOCOL_UDP, TargetPort: 91, PublishedPort: 9001},
			{Name: "https", TargetPort: 443, PublishedPort: 8443, PublishMode: pb.PortConfig_PUBLISH_MODE_HOST},
		}},
		Networks: []*pb.NetworkAttachment{{Target: "shop_front", Aliases: []string{"www", "frontend", "web"}}},
	}
	diff(t, "web", web, service(t, s, "shop_web"))

	agent := &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: "shop_agent", Labels: ns},
		Mode:        pb.ServiceMode_SERVICE_MODE_GLOBAL,
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{Image: "busybox", Args: []string{"sleep", "1000"}, Healthcheck: &pb.HealthCheck{Test: []string{"NONE"}}, Labels: ns},
			Restart:   &pb.RestartPolicy{Condition: pb.RestartPolicy_CONDITION_NONE},
		},
		// update_config: {} gets Docker's parallelism of 1
		Update:   &pb.UpdateConfig{Parallelism: 1},
		Endpoint: &pb.EndpointSpec{Mode: pb.EndpointSpec_MODE_DNSRR},
		Networks: []*pb.NetworkAttachment{{Target: "shop_back", Aliases: []string{"agent"}}},
	}
	diff(t, "agent", agent, service(t, s, "shop_agent"))

	if len(s.Networks) != 2 {
		t.Fatalf("networks: %v", s.Networks)
	}
	diff(t, "network back", &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "shop_back", Labels: ns}, Driver: "overlay", Internal: true}, s.Networks[0])
	diff(t, "network front", &pb.NetworkSpec{Annotations: &pb.Annotations{Name: "shop_front", Labels: withNS("purpose", "public")},
		Driver: "overlay", Subnet: "10.77.0.0/24", Attachable: true}, s.Networks[1])
	if len(s.Secrets) != 2 {
		t.Fatalf("secrets: %v", s.Secrets)
	}
	diff(t, "secret from environment", &pb.SecretSpec{Annotations: &pb.Annotations{Name: "shop_api_token", Labels: ns}, Data: []byte("tok")}, s.Secrets[0])
	diff(t, "secret from file", &pb.SecretSpec{Annotations: &pb.Annotations{Name: "shop_site_key", Labels: withNS("kind", "tls")}, Data: []byte("key-data\n")}, s.Secrets[1])
	// corp-net is external and used by nobody: neither created nor needed.
	if len(s.ExternalNetworks) != 0 || len(s.Warnings) != 1 || !strings.Contains(s.Warnings[0].String(), `network "shared" is not used by any service: not created`) {
		t.Errorf("external networks %v, warnings %v", s.ExternalNetworks, s.Warnings)
	}
}

// TestShortAndLongSyntaxAgree: the short forms and the long forms of the
// same file translate to the same objects.
func TestShortAndLongSyntaxAgree(t *testing.T) {
	env := []string{"TOKEN=t0k3n"}
	short, long := files("short/compose.yaml"), files("long/compose.yaml")
	short.Env, long.Env = env, env
	a, b := read(t, short), read(t, long)
	diff(t, "service", a.Services[0], b.Services[0])
	diff(t, "network", a.Networks[0], b.Networks[0])
	diff(t, "secret", a.Secrets[0], b.Secrets[0])
	got := a.Services[0]
	if ports := got.GetEndpoint().GetPorts(); len(ports) != 3 || ports[2].GetTargetPort() != 9000 || ports[2].GetPublishedPort() != 0 {
		t.Errorf("ports: %v", ports)
	}
	if c := got.GetTask().GetContainer(); strings.Join(c.GetArgs(), " ") != "sleep 60" || strings.Join(c.GetEnv(), ",") != "A=1,B=two words" ||
		c.GetHealthcheck().GetTest()[0] != "CMD-SHELL" || c.GetSecrets()[0].GetFileName() != "token" {
		t.Errorf("container: %v", c)
	}
}

// TestMergedFilesExtendsAndVariables: later files override earlier ones,
// extends pulls keys from another file, and ${VAR:-default} takes the
// environment's value when set.
func TestMergedFilesExtendsAndVariables(t *testing.T) {
	o := files("merge/base.yaml", "merge/prod.yaml")
	o.Env = []string{"API_TAG=2.1"}
	s := read(t, o)
	if len(s.Services) != 3 {
		t.Fatalf("services: %d", len(s.Services))
	}
	api := service(t, s, "shop_api")
	c := api.GetTask().GetContainer()
	if c.GetImage() != "registry.local/api:2.1" || api.GetReplicas() != 5 || c.GetUser() != "1000" || c.GetStopSignal() != "SIGINT" ||
		strings.Join(c.GetEnv(), ",") != "GOMAXPROCS=2,LOG=warn" || api.GetTask().GetResources().GetLimits().GetMemoryBytes() != 256<<20 {
		t.Errorf("api: %v", api)
	}
	service(t, s, "shop_cache")
	// Without the variable, the default holds.
	s = read(t, files("merge/base.yaml"))
	if img := service(t, s, "shop_api").GetTask().GetContainer().GetImage(); img != "registry.local/api:1.0" {
		t.Errorf("image with the default: %s", img)
	}
}

// TestProfiles: a service under a profile is deployed only with it, and
// its unsupported keys are named only then.
func TestProfiles(t *testing.T) {
	s := read(t, files("profiles/compose.yaml"))
	if len(s.Services) != 1 || len(s.Warnings) != 0 {
		t.Fatalf("without the profile: %d services, warnings %v", len(s.Services), s.Warnings)
	}
	o := files("profiles/compose.yaml")
	o.Profiles = []string{"debug"}
	s = read(t, o)
	if len(s.Services) != 2 || len(s.Warnings) != 1 || s.Warnings[0].Msg != `service "debug": ignoring unsupported option: privileged` {
		t.Fatalf("with the profile: %d services, warnings %v", len(s.Services), s.Warnings)
	}
}

// TestExternalObjects: external networks, secrets and volumes keep their
// own names and are not created.
func TestExternalObjects(t *testing.T) {
	s := read(t, files("external/compose.yaml"))
	if len(s.Networks) != 0 || len(s.Secrets) != 0 {
		t.Fatalf("created: %v %v", s.Networks, s.Secrets)
	}
	if strings.Join(s.ExternalNetworks, ",") != "edge-net" || strings.Join(s.ExternalSecrets, ",") != "cert" {
		t.Errorf("external: %v %v", s.ExternalNetworks, s.ExternalSecrets)
	}
	c := s.Services[0].GetTask().GetContainer()
	if c.GetMounts()[0].GetSource() != "shared" || c.GetSecrets()[0].GetSecretName() != "cert" || s.Services[0].GetNetworks()[0].GetTarget() != "edge-net" {
		t.Errorf("service: %v", s.Services[0])
	}
}

// TestConfigs: a config from a file becomes STACK_NAME with the stack's
// label, mounted at its target in the services that name it.
func TestConfigs(t *testing.T) {
	s := read(t, files("configs/compose.yaml"))
	if len(s.Configs) != 1 {
		t.Fatalf("configs: %v", s.Configs)
	}
	c := s.Configs[0]
	if c.GetAnnotations().GetName() != "shop_site" || string(c.GetData()) != "server { listen 80; }\n" ||
		c.GetAnnotations().GetLabels()[Namespace] != "shop" {
		t.Errorf("config: %v", c)
	}
	refs := s.Services[0].GetTask().GetContainer().GetConfigs()
	if len(refs) != 1 || refs[0].GetConfigName() != "shop_site" || refs[0].GetFileName() != "/etc/nginx/conf.d/site.conf" {
		t.Errorf("refs: %v", refs)
	}
}

// TestUnsupportedOptionsWarn: every key berth does not map is named with
// its service (or object) and line; --strict makes them an error.
func TestUnsupportedOptionsWarn(t *testing.T) {
	o := files("unsupported/compose.yaml")
	s := read(t, o)
	want := []string{
		`testdata/unsupported/compose.yaml:25: network "back": ignoring unsupported option: driver_opts`,
		`testdata/unsupported/compose.yaml:22: service "db": ignoring unsupported option: networks.back.ipv4_address`,
		`testdata/unsupported/compose.yaml:4: service "web": ignoring unsupported option: build`,
		`testdata/unsupported/compose.yaml:6: service "web": ignoring unsupported option: container_name`,
		`testdata/unsupported/compose.yaml:5: service "web": ignoring unsupported option: depends_on`,
		`testdata/unsupported/compose.yaml:15: service "web": ignoring unsupported option: deploy.resources.reservations.devices`,
		`testdata/unsupported/compose.yaml:8: service "web": ignoring unsupported option: links`,
		`testdata/unsupported/compose.yaml:11: service "web": ignoring unsupported option: ports[].host_ip`,
		`testdata/unsupported/compose.yaml:9: service "web": ignoring unsupported option: privileged`,
		`testdata/unsupported/compose.yaml:7: service "web": ignoring unsupported option: restart`,
		`testdata/unsupported/compose.yaml:29: volume "data": ignoring unsupported option: driver`,
		`testdata/unsupported/compose.yaml:28: volume "data" is not used by any service: not created`,
	}
	var got []string
	for _, w := range s.Warnings {
		got = append(got, w.String())
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
	_, err := Read(context.Background(), "shop", o, true)
	if err == nil || !strings.Contains(err.Error(), "--strict: 12 warning(s), nothing deployed") ||
		!strings.Contains(err.Error(), `service "web": ignoring unsupported option: build`) {
		t.Errorf("strict: %v", err)
	}
}

// TestMalformedFilesFailWithPositions: each bad file fails with its file,
// line, column and key.
func TestMalformedFilesFailWithPositions(t *testing.T) {
	for file, want := range map[string]string{
		"bad/syntax.yaml":      "testdata/bad/syntax.yaml:4:4: did not find expected key",
		"bad/type.yaml":        `testdata/bad/type.yaml:5:7: services.web.deploy.replicas: failed to cast to expected type: strconv.Atoi: parsing "lots"`,
		"bad/extra.yaml":       "testdata/bad/extra.yaml:5:7: services.web.deploy.replica: additional properties 'replica' not allowed",
		"bad/mode.yaml":        `testdata/bad/mode.yaml:5:7: services.web.deploy.mode: mode "replicated-job" is not supported; use replicated or global`,
		"bad/nodimage.yaml":    "testdata/bad/nodimage.yaml:2:3: services.web: no image: berth runs images and does not build them; give image:",
		"bad/port.yaml":        `testdata/bad/port.yaml:7:9: services.web.ports.1.published: "99999" is not a port; use 1-65535`,
		"bad/duration.yaml":    `testdata/bad/duration.yaml:4:5: services.web.stop_grace_period: time: invalid duration "soon"`,
		"bad/undefnet.yaml":    `testdata/bad/undefnet.yaml:4:5: services.web.networks: network "nowhere" is not declared`,
		"bad/undefsecret.yaml": `testdata/bad/undefsecret.yaml:4:5: services.web.secrets: secret "nope" is not declared`,
		"bad/secretfile.yaml":  "testdata/bad/secretfile.yaml:7:5: secrets.key.file: cannot read it",
		"bad/negative.yaml":    "testdata/bad/negative.yaml:5:7: services.web.deploy.replicas: must be greater than or equal to 0",
		"bad/flowseq.yaml":     "testdata/bad/flowseq.yaml:6:1: did not find expected ',' or ']'",
		"bad/tab.yaml":         "testdata/bad/tab.yaml:4:1: found a tab character",
		"bad/configempty.yaml": "testdata/bad/configempty.yaml:7:3: configs.site: no content",
	} {
		t.Run(file, func(t *testing.T) {
			_, err := Read(context.Background(), "shop", files(file), false)
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("got  %v\nwant %s…", err, want)
			}
		})
	}
}

// TestStackName: names that cannot prefix objects are refused.
func TestStackName(t *testing.T) {
	for _, n := range []string{"", "Shop", "-x", "a b", strings.Repeat("a", 41)} {
		if _, err := Read(context.Background(), n, files("short/compose.yaml"), false); err == nil || !strings.Contains(err.Error(), "stack name") {
			t.Errorf("name %q: %v", n, err)
		}
	}
}

// TestNanoCPUs: CPU counts come out exact, as Docker parses them.
func TestNanoCPUs(t *testing.T) {
	for in, want := range map[float32]int64{0.1: 1e8, 0.5: 5e8, 1.5: 1.5e9, 0.001: 1e6, 3: 3e9, 0.3: 3e8} {
		if got := nanoCPUs(in); got != want {
			t.Errorf("%g CPUs: %d nano CPUs, want %d", in, got, want)
		}
	}
}

// TestUnsetVariablesWarn: a variable neither set nor defaulted is named in
// a warning (and so refused by --strict); defaults and $$ are not.
func TestUnsetVariablesWarn(t *testing.T) {
	o := files("vars/compose.yaml")
	o.Env = []string{"SET_B=b"}
	s := read(t, o)
	var got []string
	for _, w := range s.Warnings {
		got = append(got, w.String())
	}
	want := []string{"variable TAG is not set: an empty string is used", "variable UNSET_A is not set: an empty string is used", "variable UNSET_E is not set: an empty string is used"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("warnings (-want +got):\n%s", d)
	}
	if env := strings.Join(s.Services[0].GetTask().GetContainer().GetEnv(), ","); env != "A=,B=d,C=$ESCAPED,D=b,E=reg/x:,F=b-b-f" {
		t.Errorf("env: %s", env)
	}
}

// BenchmarkRead reads and translates testdata/full (every key, two
// services, .env, env_file, a secret file).
func BenchmarkRead(b *testing.B) {
	o := files("full/compose.yaml")
	o.Env = []string{"API_TOKEN=tok"}
	for b.Loop() {
		if _, err := Read(context.Background(), "shop", o, false); err != nil {
			b.Fatal(err)
		}
	}
}
