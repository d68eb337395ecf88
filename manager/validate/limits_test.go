package validate

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// TestNilSpecs: every validator takes nil, and nil parts, and says what is
// missing instead of panicking.
func TestNilSpecs(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		field string
	}{
		{"service", ServiceSpec(nil), "spec"},
		{"service without task", ServiceSpec(&pb.ServiceSpec{Annotations: &pb.Annotations{Name: "a"}}), "task"},
		{"task without container", TaskSpec(&pb.TaskSpec{}), "container"},
		{"task nil", TaskSpec(nil), "container"},
		{"network", NetworkSpec(nil), "spec"},
		{"secret", SecretSpec(nil), "spec"},
		{"node", NodeSpec(nil), "spec"},
		{"cluster", ClusterSpec(nil), "spec"},
	} {
		var fe *FieldError
		if !errors.As(tc.err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v, want a FieldError for %s", tc.name, tc.err, tc.field)
		}
	}
	if err := Filters(nil); err != nil {
		t.Errorf("no filters: %v", err)
	}
}

// TestLimits: each bound refuses one past it and takes it exactly,
// naming the field, the limit and a fix.
func TestLimits(t *testing.T) {
	strs := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("K%d=v", i)
		}
		return out
	}
	for _, tc := range []struct {
		field string
		max   int
		set   func(s *pb.ServiceSpec, n int)
	}{
		{"env", maxArgs, func(s *pb.ServiceSpec, n int) { s.Task.Container.Env = strs(n) }},
		{"command", maxArgs, func(s *pb.ServiceSpec, n int) { s.Task.Container.Command = strs(n) }},
		{"args[0]", maxArgBytes, func(s *pb.ServiceSpec, n int) { s.Task.Container.Args = []string{strings.Repeat("a", n)} }},
		{"labels", maxLabels, func(s *pb.ServiceSpec, n int) {
			s.Annotations.Labels = map[string]string{}
			for i := range n {
				s.Annotations.Labels[fmt.Sprint(i)] = ""
			}
		}},
		{"container_labels", maxLabelValue, func(s *pb.ServiceSpec, n int) {
			s.Task.Container.Labels = map[string]string{"k": strings.Repeat("v", n)}
		}},
		{"placement.constraints", maxConstraints, func(s *pb.ServiceSpec, n int) {
			s.Task.Placement.Constraints = make([]string, n)
			for i := range n {
				s.Task.Placement.Constraints[i] = "node.labels.zone==a"
			}
		}},
		{"mounts", maxMounts, func(s *pb.ServiceSpec, n int) {
			for i := range n {
				s.Task.Container.Mounts = append(s.Task.Container.Mounts, &pb.Mount{Type: pb.Mount_TYPE_TMPFS, Target: fmt.Sprintf("/m%d", i)})
			}
		}},
		{"secrets", maxSecrets, func(s *pb.ServiceSpec, n int) {
			for i := range n {
				s.Task.Container.Secrets = append(s.Task.Container.Secrets, &pb.SecretReference{SecretId: "x", FileName: fmt.Sprint(i)})
			}
		}},
		{"ports", maxPorts, func(s *pb.ServiceSpec, n int) {
			s.Endpoint.Ports = nil
			for i := range n {
				s.Endpoint.Ports = append(s.Endpoint.Ports, &pb.PortConfig{TargetPort: uint32(1 + i)})
			}
		}},
		{"networks", maxNetworks, func(s *pb.ServiceSpec, n int) {
			for i := range n {
				s.Networks = append(s.Networks, &pb.NetworkAttachment{Target: fmt.Sprint("n", i)})
			}
		}},
		{"hostname", maxHostname, func(s *pb.ServiceSpec, n int) { s.Task.Container.Hostname = strings.Repeat("h", n) }},
		{"workdir", maxPath, func(s *pb.ServiceSpec, n int) { s.Task.Container.Workdir = "/" + strings.Repeat("w", n-1) }},
	} {
		s := validService()
		tc.set(s, tc.max)
		if err := ServiceSpec(s); err != nil {
			t.Errorf("%s at its limit %d: %v", tc.field, tc.max, err)
		}
		s = validService()
		tc.set(s, tc.max+1)
		err := ServiceSpec(s)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(err.Error(), fmt.Sprintf("limit of %d", tc.max)) || fe.Fix == "" {
			t.Errorf("%s past its limit: %v; want a FieldError for %s naming the limit %d and a fix", tc.field, err, tc.field, tc.max)
		}
	}
}

func TestSecretTarget(t *testing.T) {
	for _, tc := range []struct{ in, want, bad string }{
		{in: "db", want: "db"},
		{in: "/run/secrets/db", want: "db"},
		{in: "/run/secrets//conf/./db.pem", want: "conf/db.pem"},
		{in: "./a//b/", want: "a/b"},
		{in: "..", bad: "'..'"},
		{in: "a/../b", bad: "'..'"},
		{in: "/run/secrets/../../etc/passwd", bad: "'..'"},
		{in: "/etc/shadow", bad: "outside /run/secrets"},
		{in: "/run/secretsX", bad: "outside /run/secrets"},
		{in: "/run/secrets", bad: "outside /run/secrets"},
		{in: "/run/secrets/", bad: "names no file"},
		{in: ".", bad: "names no file"},
		{in: "a\x00b", bad: "NUL"},
	} {
		got, err := SecretTarget("secrets[0].target", &pb.SecretReference{SecretId: "x", FileName: tc.in})
		switch {
		case tc.bad == "" && (err != nil || got != tc.want):
			t.Errorf("%q: %q, %v; want %q", tc.in, got, err, tc.want)
		case tc.bad != "" && (err == nil || !strings.Contains(err.Error(), tc.bad) || !strings.Contains(err.Error(), "invalid secrets[0].target")):
			t.Errorf("%q: %q, %v; want an error about %s", tc.in, got, err, tc.bad)
		}
	}
	// Without a target the secret's name is used: names are safe.
	if got, err := SecretTarget("t", &pb.SecretReference{SecretName: "db"}); got != "db" || err != nil {
		t.Errorf("name only: %q, %v", got, err)
	}
	s := validService()
	s.Task.Container.Secrets = []*pb.SecretReference{{SecretName: "a", FileName: "x"}, {SecretName: "b", FileName: "/run/secrets/x"}}
	if err := ServiceSpec(s); err == nil || !strings.Contains(err.Error(), "invalid secrets[1].target") {
		t.Errorf("two secrets at one target: %v", err)
	}
}

// FuzzSpecs feeds every validator the same random bytes, each decoded as
// its own spec: none may panic on any spec a client can send.
func FuzzSpecs(f *testing.F) {
	b, _ := proto.Marshal(validService())
	f.Add(b)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var (
			svc pb.ServiceSpec
			nw  pb.NetworkSpec
			sec pb.SecretSpec
			nd  pb.NodeSpec
			cl  pb.ClusterSpec
			lf  pb.ListFilters
		)
		for m, check := range map[proto.Message]func() error{
			&svc: func() error { return ServiceSpec(&svc) },
			&nw:  func() error { return NetworkSpec(&nw) },
			&sec: func() error { return SecretSpec(&sec) },
			&nd:  func() error { return NodeSpec(&nd) },
			&cl:  func() error { return ClusterSpec(&cl) },
			&lf:  func() error { return Filters(&lf) },
		} {
			if proto.Unmarshal(data, m) == nil {
				_ = check() // must not panic
			}
		}
	})
}

// TestSecretMode: a secret's file mode is permission bits only; a setuid
// or sticky bit, or anything wider, is refused.
func TestSecretMode(t *testing.T) {
	if err := containerFiles(&pb.ContainerSpec{Secrets: []*pb.SecretReference{{SecretName: "db", Mode: 0o400}}}); err != nil {
		t.Fatal(err)
	}
	err := containerFiles(&pb.ContainerSpec{Secrets: []*pb.SecretReference{{SecretName: "db", Mode: 0o4755}}})
	if err == nil || !strings.Contains(err.Error(), "secrets[0].mode") || !strings.Contains(err.Error(), "04755") {
		t.Fatalf("mode 04755: %v", err)
	}
}
