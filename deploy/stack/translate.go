package stack

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	pb "berth/proto/berth/v1"
)

// Namespace is the label every object of a stack carries, with the
// stack's name as its value (Docker's label, so tools that know Docker
// stacks recognise berth's).
const Namespace = "com.docker.stack.namespace"

// Stack is what a project asks of the cluster: the objects the stack owns
// and the external ones it needs.
type Stack struct {
	Name     string
	Services []*pb.ServiceSpec
	// Networks, Secrets and Configs are created by the stack, named
	// STACK_NAME.
	Networks []*pb.NetworkSpec
	Secrets  []*pb.SecretSpec
	Configs  []*pb.ConfigSpec
	// ExternalNetworks, ExternalSecrets and ExternalConfigs must exist
	// already; the stack uses them and never changes or removes them.
	ExternalNetworks []string
	ExternalSecrets  []string
	ExternalConfigs  []string
	Warnings         []Warning
}

// Translate maps a project to berth objects. Keys berth does not support
// are in p.Warnings already; values berth cannot honour fail here, with
// the file, line and key.
func Translate(p *Project) (*Stack, error) {
	s := &Stack{Name: p.Name, Warnings: append([]Warning(nil), p.Warnings...)}
	used := usage{networks: map[string]bool{}, secrets: map[string]bool{}, configs: map[string]bool{}, volumes: map[string]bool{}}
	for _, name := range sortedKeys(p.compose.Services) {
		spec, err := p.service(p.compose.Services[name], used)
		if err != nil {
			return nil, err
		}
		s.Services = append(s.Services, spec)
	}
	if err := p.networks(s, used.networks); err != nil {
		return nil, err
	}
	if err := p.secrets(s, used.secrets); err != nil {
		return nil, err
	}
	if err := p.configs(s, used.configs); err != nil {
		return nil, err
	}
	p.unusedVolumes(s, used.volumes)
	return s, nil
}

// Read loads the files of o and translates them. With strict, a warning
// is an error: the stack is not deployed.
func Read(ctx context.Context, name string, o Options, strict bool) (*Stack, error) {
	p, err := Load(ctx, name, o)
	if err != nil {
		return nil, err
	}
	s, err := Translate(p)
	if err != nil {
		return nil, err
	}
	if strict && len(s.Warnings) > 0 {
		lines := make([]string, len(s.Warnings))
		for i, w := range s.Warnings {
			lines[i] = "  " + w.String()
		}
		return nil, fmt.Errorf("--strict: %d warning(s), nothing deployed:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	return s, nil
}

// usage records the top-level objects the services refer to, by key.
type usage struct {
	networks, secrets, configs, volumes map[string]bool
}

// labels is a copy of l with the stack's namespace label.
func (p *Project) labels(l map[string]string) map[string]string {
	out := make(map[string]string, len(l)+1)
	for k, v := range l {
		out[k] = v
	}
	out[Namespace] = p.Name
	return out
}

func (p *Project) networks(s *Stack, used map[string]bool) error {
	for _, key := range sortedKeys(p.compose.Networks) {
		n := p.compose.Networks[key]
		if !used[key] {
			s.Warnings = append(s.Warnings, p.unused("networks", key, "network"))
			continue
		}
		if n.External {
			s.ExternalNetworks = append(s.ExternalNetworks, n.Name)
			continue
		}
		if n.Driver != "" && n.Driver != "overlay" {
			return p.loc.errorf("networks."+key+".driver", "driver %q is not supported: berth networks are overlay networks; drop driver or use overlay", n.Driver)
		}
		spec := &pb.NetworkSpec{
			Annotations: &pb.Annotations{Name: n.Name, Labels: p.labels(n.Labels)},
			Driver:      "overlay",
			Attachable:  n.Attachable,
			Internal:    n.Internal,
		}
		switch len(n.Ipam.Config) {
		case 0:
		case 1:
			spec.Subnet = n.Ipam.Config[0].Subnet
		default:
			return p.loc.errorf("networks."+key+".ipam.config", "%d subnets: a berth network has one; keep one entry", len(n.Ipam.Config))
		}
		s.Networks = append(s.Networks, spec)
	}
	return nil
}

func (p *Project) secrets(s *Stack, used map[string]bool) error {
	for _, key := range sortedKeys(p.compose.Secrets) {
		sec := p.compose.Secrets[key]
		if !used[key] {
			s.Warnings = append(s.Warnings, p.unused("secrets", key, "secret"))
			continue
		}
		if sec.External {
			s.ExternalSecrets = append(s.ExternalSecrets, sec.Name)
			continue
		}
		data, err := p.secretData(key, sec)
		if err != nil {
			return err
		}
		s.Secrets = append(s.Secrets, &pb.SecretSpec{
			Annotations: &pb.Annotations{Name: sec.Name, Labels: p.labels(sec.Labels)},
			Data:        data,
		})
	}
	return nil
}

// secretData reads a secret's content from its file or variable.
func (p *Project) secretData(key string, sec types.SecretConfig) ([]byte, error) {
	f := types.FileObjectConfig(sec)
	f.Content = "" // a config's key only: warned about on a secret
	return p.fileData("secrets."+key, f, maxSecretSize, "500 KiB", "`berth secret create`")
}

// fileData reads a secret's or config's content from its file, variable
// or inline content, bounded by limit.
func (p *Project) fileData(at string, f types.FileObjectConfig, limit int64, size, create string) ([]byte, error) {
	var data []byte
	switch {
	case f.File != "":
		b, err := readBounded(f.File, limit)
		if err != nil {
			return nil, p.loc.errorf(at+".file", "cannot read it: %v", err)
		}
		data = b
	case f.Environment != "":
		v, ok := p.compose.Environment[f.Environment]
		if !ok {
			return nil, p.loc.errorf(at+".environment", "variable %s is not set; set it in the environment or in .env", f.Environment)
		}
		data = []byte(v)
	case f.Content != "":
		data = []byte(f.Content)
	default:
		return nil, p.loc.errorf(at, "no content: give file: or environment:, or external: true for one created with %s", create)
	}
	if len(data) == 0 {
		return nil, p.loc.errorf(at, "it is empty; berth keeps no empty secrets or configs")
	}
	if int64(len(data)) > limit {
		return nil, p.loc.errorf(at, "it is larger than %s; keep it under %s", size, size)
	}
	return data, nil
}

// maxSecretSize and maxConfigSize are the largest secret and config
// managers accept (Docker's 500 KiB and 1000 KiB).
const (
	maxSecretSize = 500 << 10
	maxConfigSize = 1000 << 10
)

// readBounded reads at most limit+1 bytes of a file: enough to tell it is
// too large without reading all of it (a secret file: /dev/zero ends).
func readBounded(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

func (p *Project) configs(s *Stack, used map[string]bool) error {
	for _, key := range sortedKeys(p.compose.Configs) {
		cfg := p.compose.Configs[key]
		if !used[key] {
			s.Warnings = append(s.Warnings, p.unused("configs", key, "config"))
			continue
		}
		if cfg.External {
			s.ExternalConfigs = append(s.ExternalConfigs, cfg.Name)
			continue
		}
		data, err := p.fileData("configs."+key, types.FileObjectConfig(cfg), maxConfigSize, "1000 KiB", "`berth config create`")
		if err != nil {
			return err
		}
		s.Configs = append(s.Configs, &pb.ConfigSpec{
			Annotations: &pb.Annotations{Name: cfg.Name, Labels: p.labels(cfg.Labels)},
			Data:        data,
		})
	}
	return nil
}

func (p *Project) unusedVolumes(s *Stack, used map[string]bool) {
	for _, key := range sortedKeys(p.compose.Volumes) {
		if !used[key] {
			s.Warnings = append(s.Warnings, p.unused("volumes", key, "volume"))
		}
	}
}

// unused is the warning for a declared object no service uses: berth
// creates objects for the services that need them, as Docker does.
func (p *Project) unused(kind, key, what string) Warning {
	w := p.loc.warning(kind + "." + key)
	w.Msg = fmt.Sprintf("%s %q is not used by any service: not created", what, key)
	return w
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// sortedEnv turns a mapping into KEY=VALUE entries in key order. A
// variable without a value takes its value from the environment of the
// deploy (compose-go has done that); one still without a value is unset
// there and so left out, as `docker run -e NAME` leaves it out.
func sortedEnv(env types.MappingWithEquals) []string {
	var out []string
	for _, k := range sortedKeys(env) {
		if v := env[k]; v != nil {
			out = append(out, k+"="+*v)
		}
	}
	return slices.Clip(out)
}
