package validate

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "berth/proto/berth/v1"
)

func validService() *pb.ServiceSpec {
	return &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: "web"},
		Replicas:    proto.Int64(3),
		Task: &pb.TaskSpec{
			Container: &pb.ContainerSpec{Image: "127.0.0.1:5000/app:v1", Env: []string{"A=1"}},
			Placement: &pb.Placement{Constraints: []string{"node.labels.zone==a"}},
		},
		Endpoint: &pb.EndpointSpec{Ports: []*pb.PortConfig{{TargetPort: 8080, PublishedPort: 80}}},
	}
}

func TestServiceSpec(t *testing.T) {
	if err := ServiceSpec(validService()); err != nil {
		t.Fatalf("valid spec refused: %v", err)
	}
	for _, tc := range []struct {
		name      string
		mutate    func(*pb.ServiceSpec)
		wantField string
		wantText  string
	}{
		{"empty image", func(s *pb.ServiceSpec) { s.Task.Container.Image = "" }, "image", "busybox:latest"},
		{"bad image", func(s *pb.ServiceSpec) { s.Task.Container.Image = "UPPER/Case::x" }, "image", "not an image reference"},
		{"negative replicas", func(s *pb.ServiceSpec) { s.Replicas = proto.Int64(-1) }, "replicas", "out of range"},
		{"replicas with global", func(s *pb.ServiceSpec) { s.Mode = pb.ServiceMode_SERVICE_MODE_GLOBAL }, "replicas", "global"},
		{"bad name", func(s *pb.ServiceSpec) { s.Annotations.Name = "-web" }, "name", "not valid"},
		{"no name", func(s *pb.ServiceSpec) { s.Annotations.Name = "" }, "name", "empty"},
		{"negative grace", func(s *pb.ServiceSpec) {
			s.Task.Container.StopGracePeriod = durationpb.New(-time.Second)
		}, "stop_grace_period", "negative"},
		{"invalid duration", func(s *pb.ServiceSpec) {
			s.Task.Restart = &pb.RestartPolicy{Delay: &durationpb.Duration{Seconds: 1, Nanos: -5}}
		}, "restart_policy.delay", "10s"},
		{"bad constraint", func(s *pb.ServiceSpec) { s.Task.Placement.Constraints = []string{"zone=a"} }, "placement.constraints", "KEY==VALUE"},
		{"env without key", func(s *pb.ServiceSpec) { s.Task.Container.Env = []string{"=x"} }, "env[0]", "KEY=VALUE"},
		{"port twice", func(s *pb.ServiceSpec) {
			s.Endpoint.Ports = append(s.Endpoint.Ports, &pb.PortConfig{TargetPort: 81, PublishedPort: 80})
		}, "ports[1].published", "twice"},
		{"two health checks", func(s *pb.ServiceSpec) {
			s.Task.Container.Healthcheck = &pb.HealthCheck{Test: []string{"CMD", "true"}, HttpPort: 8080}
		}, "healthcheck", "one of --health-cmd"},
		{"health port out of range", func(s *pb.ServiceSpec) {
			s.Task.Container.Healthcheck = &pb.HealthCheck{TcpPort: 70000}
		}, "healthcheck.tcp_port", "1-65535"},
		{"relative health path", func(s *pb.ServiceSpec) {
			s.Task.Container.Healthcheck = &pb.HealthCheck{HttpPort: 8080, HttpPath: "health"}
		}, "healthcheck.http_path", "start it with /"},
		{"rollback that rolls back", func(s *pb.ServiceSpec) {
			s.Rollback = &pb.UpdateConfig{FailureAction: pb.UpdateConfig_FAILURE_ACTION_ROLLBACK}
		}, "rollback_config.failure_action", "pause or continue"},
		{"unknown update order", func(s *pb.ServiceSpec) { s.Update = &pb.UpdateConfig{Order: 7} }, "update_config.order", "start-first"},
		{"target port 0", func(s *pb.ServiceSpec) { s.Endpoint.Ports[0].TargetPort = 0 }, "ports[0].target", "1-65535"},
		{"relative mount", func(s *pb.ServiceSpec) {
			s.Task.Container.Mounts = []*pb.Mount{{Type: pb.Mount_TYPE_VOLUME, Source: "data", Target: "data"}}
		}, "mounts[0].target", "absolute"},
		{"reservation over limit", func(s *pb.ServiceSpec) {
			s.Task.Resources = &pb.Resources{Limits: &pb.ResourceSet{MemoryBytes: 64 << 20}, Reservations: &pb.ResourceSet{MemoryBytes: 128 << 20}}
		}, "resources.reservations.memory", "exceeds"},
		{"unknown signal", func(s *pb.ServiceSpec) { s.Task.Container.StopSignal = "SIGFOO" }, "stop_signal", "SIGTERM"},
		{"dnsrr with ingress", func(s *pb.ServiceSpec) { s.Endpoint.Mode = pb.EndpointSpec_MODE_DNSRR }, "ports[0].mode", "vip"},
		{"registry auth without server", func(s *pb.ServiceSpec) {
			s.Task.Container.RegistryAuth = &pb.RegistryAuth{Username: "u", Password: "p"}
		}, "registry_auth.server", "127.0.0.1:5000"},
		{"registry auth for another registry", func(s *pb.ServiceSpec) {
			s.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: "ghcr.io", Username: "u", Password: "p"}
		}, "registry_auth.server", `comes from "127.0.0.1:5000"`},
		{"registry auth without user", func(s *pb.ServiceSpec) {
			s.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: "127.0.0.1:5000", Password: "p"}
		}, "registry_auth.username", "--registry-user"},
		{"registry user with colon", func(s *pb.ServiceSpec) {
			s.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: "127.0.0.1:5000", Username: "a:b", Password: "p"}
		}, "registry_auth.username", "':'"},
		{"registry auth without password", func(s *pb.ServiceSpec) {
			s.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: "127.0.0.1:5000", Username: "u"}
		}, "registry_auth.password", "--registry-password-stdin"},
		{"apparmor option", func(s *pb.ServiceSpec) {
			s.Task.Container.SecurityOpts = []string{"seccomp=unconfined", "apparmor=unconfined"}
		}, "security_opts[1]", "not supported"},
		{"no-new-privileges=false", func(s *pb.ServiceSpec) {
			s.Task.Container.SecurityOpts = []string{"no-new-privileges=false"}
		}, "security_opts[0]", "always sets no_new_privs"},
		{"seccomp file path not read", func(s *pb.ServiceSpec) {
			s.Task.Container.SecurityOpts = []string{"seccomp=/etc/profile.json"}
		}, "security_opts[0]", "reads seccomp=FILE"},
		{"seccomp profile with a bad action", func(s *pb.ServiceSpec) {
			s.Task.Container.SecurityOpts = []string{"no-new-privileges", `seccomp={"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALOW"}]}`}
		}, "security_opts[1]", `syscalls[0]: action: "SCMP_ACT_ALOW" is not an action`},
		{"seccomp profile without default action", func(s *pb.ServiceSpec) {
			s.Task.Container.SecurityOpts = []string{`seccomp={"syscalls":[]}`}
		}, "security_opts[0]", "defaultAction is missing"},
		{"network twice", func(s *pb.ServiceSpec) {
			s.Networks = []*pb.NetworkAttachment{{Target: "n"}, {Target: "n"}}
		}, "networks[1]", "twice"},
		{"bad network alias", func(s *pb.ServiceSpec) {
			s.Networks = []*pb.NetworkAttachment{{Target: "n", Aliases: []string{"db", "no_underscores"}}}
		}, "networks[0].aliases", "not a DNS name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := validService()
			tc.mutate(s)
			err := ServiceSpec(s)
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("got %v, want a *FieldError", err)
			}
			if fe.Field != tc.wantField || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("got %q (field %s), want field %s mentioning %q", err, fe.Field, tc.wantField, tc.wantText)
			}
		})
	}
}

func TestSecurityOptsValid(t *testing.T) {
	for _, opts := range [][]string{
		{"seccomp=unconfined"},
		{"seccomp=builtin", "no-new-privileges"},
		{`seccomp={"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}`},
	} {
		s := validService()
		s.Task.Container.SecurityOpts = opts
		if err := ServiceSpec(s); err != nil {
			t.Errorf("%q refused: %v", opts, err)
		}
	}
}

func TestRegistryAuthValid(t *testing.T) {
	for _, tc := range []struct{ image, server string }{
		{"127.0.0.1:5000/app:v1", "127.0.0.1:5000"},
		{"busybox", "index.docker.io"},
		{"library/busybox:1", "docker.io"},
		{"ghcr.io/o/app@sha256:" + strings.Repeat("a", 64), "ghcr.io"},
	} {
		s := validService()
		s.Task.Container.Image = tc.image
		s.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: tc.server, Username: "u", Password: "p"}
		if err := ServiceSpec(s); err != nil {
			t.Errorf("%s with credentials for %s: %v", tc.image, tc.server, err)
		}
		// A stored spec holds the password sealed only.
		s.Task.Container.RegistryAuth = &pb.RegistryAuth{Server: tc.server, Username: "u", SealedPassword: []byte{1}}
		if err := ServiceSpec(s); err != nil {
			t.Errorf("%s with sealed credentials: %v", tc.image, err)
		}
	}
}

func TestGlobalWithoutReplicasIsValid(t *testing.T) {
	s := validService()
	s.Mode, s.Replicas = pb.ServiceMode_SERVICE_MODE_GLOBAL, nil
	if err := ServiceSpec(s); err != nil {
		t.Fatal(err)
	}
}

func TestPortConflict(t *testing.T) {
	other := &pb.Service{Id: "s2", Spec: &pb.ServiceSpec{Annotations: &pb.Annotations{Name: "api"},
		Endpoint: &pb.EndpointSpec{Ports: []*pb.PortConfig{{TargetPort: 1, PublishedPort: 80}}}}}
	err := PortConflict("s1", validService(), []*pb.Service{other})
	if err == nil || !strings.Contains(err.Error(), `already published by service "api"`) {
		t.Fatalf("got %v", err)
	}
	if err := PortConflict("s2", validService(), []*pb.Service{other}); err != nil {
		t.Fatalf("a service conflicts with itself: %v", err)
	}
}

func TestOtherSpecs(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{NetworkSpec(&pb.NetworkSpec{Annotations: &pb.Annotations{Name: "n"}, Subnet: "10.0.0.1/24"}), "host bits"},
		{NetworkSpec(&pb.NetworkSpec{Annotations: &pb.Annotations{Name: "n"}, Driver: "bridge"}), "unknown driver"},
		{SecretSpec(&pb.SecretSpec{Annotations: &pb.Annotations{Name: "s"}}), "empty"},
		{SecretSpec(&pb.SecretSpec{Annotations: &pb.Annotations{Name: "s"}, Data: make([]byte, MaxSecretSize+1)}), "500 KiB"},
		{NodeSpec(&pb.NodeSpec{Availability: 7}), "active, pause or drain"},
		{ClusterSpec(&pb.ClusterSpec{AddressPool: "nope"}), "IPv4 CIDR"},
		{ClusterSpec(&pb.ClusterSpec{AddressPool: "10.0.0.0/16", AddressPoolMaskLen: 8}), "address_pool_mask_len"},
		{ClusterSpec(&pb.ClusterSpec{AddressPool: "10.0.0.0/16", AddressPoolMaskLen: 30}), "from 16 to 29"},
		{ClusterSpec(&pb.ClusterSpec{HeartbeatPeriod: durationpb.New(time.Millisecond)}), "heartbeat_period: 1ms is out of range"},
		{ClusterSpec(&pb.ClusterSpec{HeartbeatPeriod: durationpb.New(time.Hour)}), "from 100ms to 1m0s"},
		{ClusterSpec(&pb.ClusterSpec{HeartbeatPeriod: durationpb.New(-time.Second)}), "heartbeat_period"},
	} {
		if tc.err == nil || !strings.Contains(tc.err.Error(), tc.want) {
			t.Errorf("got %v, want %q", tc.err, tc.want)
		}
	}
	if err := NetworkSpec(&pb.NetworkSpec{Annotations: &pb.Annotations{Name: "n"}, Subnet: "10.0.0.0/24"}); err != nil {
		t.Error(err)
	}
	for _, p := range []time.Duration{0, 100 * time.Millisecond, 5 * time.Second, time.Minute} {
		if err := ClusterSpec(&pb.ClusterSpec{HeartbeatPeriod: durationpb.New(p)}); err != nil {
			t.Errorf("heartbeat period %s: %v", p, err)
		}
	}
}
