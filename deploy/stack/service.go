package stack

import (
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "berth/proto/berth/v1"
)

// svcCtx is one service being translated: where its keys are and what it
// uses.
type svcCtx struct {
	p    *Project
	svc  types.ServiceConfig
	at   string // "services.NAME"
	used usage
}

func (c *svcCtx) errorf(key, format string, args ...any) error {
	k := c.at
	if key != "" {
		k += "." + key
	}
	return c.p.loc.errorf(k, format, args...)
}

// service maps one Compose service to a service spec.
func (p *Project) service(svc types.ServiceConfig, used usage) (*pb.ServiceSpec, error) {
	c := &svcCtx{p: p, svc: svc, at: "services." + svc.Name, used: used}
	if svc.Image == "" {
		return nil, c.errorf("", "no image: berth runs images and does not build them; give image:")
	}
	ct, err := c.container()
	if err != nil {
		return nil, err
	}
	spec := &pb.ServiceSpec{
		Annotations: &pb.Annotations{Name: p.Name + "_" + svc.Name, Labels: p.labels(nil)},
		Task:        &pb.TaskSpec{Container: ct},
		Endpoint:    &pb.EndpointSpec{},
	}
	if spec.Endpoint.Ports, err = c.ports(); err != nil {
		return nil, err
	}
	if spec.Networks, err = c.networks(); err != nil {
		return nil, err
	}
	if err := c.deploy(spec); err != nil {
		return nil, err
	}
	return spec, nil
}

func (c *svcCtx) container() (*pb.ContainerSpec, error) {
	s := c.svc
	ct := &pb.ContainerSpec{
		Image:      s.Image,
		Command:    slices.Clone(s.Entrypoint),
		Args:       slices.Clone(s.Command),
		Env:        sortedEnv(s.Environment),
		User:       s.User,
		Workdir:    s.WorkingDir,
		Hostname:   s.Hostname,
		StopSignal: s.StopSignal,
		ReadOnly:   s.ReadOnly,
		Tty:        s.Tty,
		Labels:     c.p.labels(s.Labels),
	}
	if ct.Workdir != "" && !path.IsAbs(ct.Workdir) {
		return nil, c.errorf("working_dir", "%q is not absolute; use a path starting with /", ct.Workdir)
	}
	if s.StopGracePeriod != nil {
		ct.StopGracePeriod = durationpb.New(time.Duration(*s.StopGracePeriod))
	}
	var err error
	if ct.Mounts, err = c.mounts(); err != nil {
		return nil, err
	}
	if ct.Healthcheck, err = c.health(); err != nil {
		return nil, err
	}
	if ct.Secrets, err = c.secretRefs(); err != nil {
		return nil, err
	}
	if ct.Configs, err = c.configRefs(); err != nil {
		return nil, err
	}
	return ct, nil
}

func (c *svcCtx) ports() ([]*pb.PortConfig, error) {
	var out []*pb.PortConfig
	for i, p := range c.svc.Ports {
		key := fmt.Sprintf("ports.%d", i)
		pc := &pb.PortConfig{Name: p.Name, TargetPort: p.Target}
		if p.Published != "" {
			n, err := strconv.ParseUint(p.Published, 10, 16)
			if err != nil || n == 0 {
				return nil, c.errorf(key+".published", "%q is not a port; use 1-65535", p.Published)
			}
			pc.PublishedPort = uint32(n)
		}
		switch p.Protocol {
		case "", "tcp":
		case "udp":
			pc.Protocol = pb.PortConfig_PROTOCOL_UDP
		default:
			return nil, c.errorf(key+".protocol", "protocol %q is not supported; use tcp or udp", p.Protocol)
		}
		switch p.Mode {
		case "", "ingress":
		case "host":
			pc.PublishMode = pb.PortConfig_PUBLISH_MODE_HOST
		default:
			return nil, c.errorf(key+".mode", "mode %q is not a publish mode; use ingress or host", p.Mode)
		}
		out = append(out, pc)
	}
	return out, nil
}

func (c *svcCtx) mounts() ([]*pb.Mount, error) {
	var out []*pb.Mount
	for i, v := range c.svc.Volumes {
		key := fmt.Sprintf("volumes.%d", i)
		m := &pb.Mount{Target: v.Target, ReadOnly: v.ReadOnly}
		switch v.Type {
		case types.VolumeTypeVolume:
			if v.Source == "" {
				return nil, c.errorf(key, "anonymous volume at %s: berth mounts named volumes; name it (NAME:%s) and declare it under volumes:", v.Target, v.Target)
			}
			vol, ok := c.p.compose.Volumes[v.Source]
			if !ok {
				return nil, c.errorf(key+".source", "volume %q is not declared; declare it under the top-level volumes:", v.Source)
			}
			c.used.volumes[v.Source] = true
			m.Type, m.Source = pb.Mount_TYPE_VOLUME, vol.Name
		case types.VolumeTypeBind:
			m.Type, m.Source = pb.Mount_TYPE_BIND, v.Source
		case types.VolumeTypeTmpfs:
			m.Type = pb.Mount_TYPE_TMPFS
			if v.Tmpfs != nil {
				m.TmpfsSizeBytes = int64(v.Tmpfs.Size)
			}
		default:
			return nil, c.errorf(key+".type", "volume type %q is not supported; use volume, bind or tmpfs", v.Type)
		}
		out = append(out, m)
	}
	return out, nil
}

func (c *svcCtx) health() (*pb.HealthCheck, error) {
	h := c.svc.HealthCheck
	if h == nil {
		return nil, nil
	}
	if h.Disable {
		return &pb.HealthCheck{Test: []string{"NONE"}}, nil
	}
	out := &pb.HealthCheck{
		Test:          slices.Clone(h.Test),
		Interval:      duration(h.Interval),
		Timeout:       duration(h.Timeout),
		StartPeriod:   duration(h.StartPeriod),
		StartInterval: duration(h.StartInterval),
	}
	if len(out.Test) > 0 && !slices.Contains([]string{"CMD", "CMD-SHELL", "NONE"}, out.Test[0]) {
		return nil, c.errorf("healthcheck.test", "%q must start with CMD, CMD-SHELL or NONE (or be one string, run by the shell)", out.Test[0])
	}
	if h.Retries != nil {
		if *h.Retries > 1<<31 {
			return nil, c.errorf("healthcheck.retries", "%d is too many; use up to 2147483648", *h.Retries)
		}
		out.Retries = uint32(*h.Retries)
	}
	return out, nil
}

func duration(d *types.Duration) *durationpb.Duration {
	if d == nil {
		return nil
	}
	return durationpb.New(time.Duration(*d))
}

func (c *svcCtx) networks() ([]*pb.NetworkAttachment, error) {
	var out []*pb.NetworkAttachment
	for _, key := range sortedKeys(c.svc.Networks) {
		n, ok := c.p.compose.Networks[key]
		if !ok {
			return nil, c.errorf("networks."+key, "network %q is not declared; declare it under the top-level networks:", key)
		}
		c.used.networks[key] = true
		att := &pb.NetworkAttachment{Target: n.Name}
		if cfg := c.svc.Networks[key]; cfg != nil {
			att.Aliases = slices.Clone(cfg.Aliases)
		}
		// Docker gives each task its service's name in the file as an
		// alias on every network, so "api" reaches STACK_api.
		if isDNSLabel(c.svc.Name) && !slices.Contains(att.Aliases, c.svc.Name) {
			att.Aliases = append(att.Aliases, c.svc.Name)
		}
		out = append(out, att)
	}
	return out, nil
}

// isDNSLabel reports whether s can be a DNS name (letters, digits, '-').
func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	return strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-')
	}) < 0
}

const secretsDir = "/run/secrets"

func (c *svcCtx) secretRefs() ([]*pb.SecretReference, error) {
	var out []*pb.SecretReference
	for i, r := range c.svc.Secrets {
		f, err := c.fileRef("secret", i, types.FileReferenceConfig(r), func(src string) (string, bool) {
			sec, ok := c.p.compose.Secrets[src]
			return sec.Name, ok
		}, c.used.secrets, secretTarget, "0400")
		if err != nil {
			return nil, err
		}
		out = append(out, &pb.SecretReference{SecretName: f.name, FileName: f.file, Uid: f.uid, Gid: f.gid, Mode: f.mode})
	}
	return out, nil
}

func (c *svcCtx) configRefs() ([]*pb.ConfigReference, error) {
	var out []*pb.ConfigReference
	for i, r := range c.svc.Configs {
		f, err := c.fileRef("config", i, types.FileReferenceConfig(r), func(src string) (string, bool) {
			cfg, ok := c.p.compose.Configs[src]
			return cfg.Name, ok
		}, c.used.configs, configTarget, "0444")
		if err != nil {
			return nil, err
		}
		out = append(out, &pb.ConfigReference{ConfigName: f.name, FileName: f.file, Uid: f.uid, Gid: f.gid, Mode: f.mode})
	}
	return out, nil
}

// fileReference is a service's reference i to a secret or config, checked.
type fileReference struct {
	name, file     string
	uid, gid, mode uint32
}

// fileRef checks reference i of kind ("secret" or "config"): its source
// declared at the top level (lookup gives the object's name), its target
// (placed by target), uid, gid and mode; it marks the source used.
func (c *svcCtx) fileRef(kind string, i int, r types.FileReferenceConfig, lookup func(string) (string, bool),
	used map[string]bool, target func(source, target string) (string, error), modeHint string) (fileReference, error) {
	key := fmt.Sprintf("%ss.%d", kind, i)
	var f fileReference
	name, ok := lookup(r.Source)
	if !ok {
		return f, c.errorf(key+".source", "%s %q is not declared; declare it under the top-level %ss:", kind, r.Source, kind)
	}
	used[r.Source] = true
	f.name = name
	var err error
	if f.file, err = target(r.Source, r.Target); err != nil {
		return f, c.errorf(key+".target", "%v", err)
	}
	if f.uid, err = parseID(r.UID); err != nil {
		return f, c.errorf(key+".uid", "%v", err)
	}
	if f.gid, err = parseID(r.GID); err != nil {
		return f, c.errorf(key+".gid", "%v", err)
	}
	if r.Mode != nil {
		if *r.Mode > 0o777 || *r.Mode < 0 {
			return f, c.errorf(key+".mode", "%#o is not a file mode; use one such as %s", int64(*r.Mode), modeHint)
		}
		f.mode = uint32(*r.Mode)
	}
	return f, nil
}

// configTarget is where a config appears, absolute and cleaned as
// managers store it: a relative target is taken from /, none is
// /SOURCE (Docker's default).
func configTarget(source, target string) (string, error) {
	if target == "" {
		target = source
	}
	if slices.Contains(strings.Split(target, "/"), "..") || strings.ContainsRune(target, 0) || path.Clean("/"+target) == "/" {
		return "", fmt.Errorf("%q names no file; give an absolute path such as /etc/app.conf", target)
	}
	return path.Clean("/" + target), nil
}

// secretTarget is the file a secret appears as, relative to /run/secrets
// and cleaned, as managers store it.
func secretTarget(source, target string) (string, error) {
	if target == "" {
		target = source
	}
	rel := target
	if path.IsAbs(target) {
		var ok bool
		if rel, ok = strings.CutPrefix(target, secretsDir+"/"); !ok {
			return "", fmt.Errorf("%q is outside %s; use a file name such as %s", target, secretsDir, source)
		}
	}
	if slices.Contains(strings.Split(rel, "/"), "..") || path.Clean(rel) == "." || strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("%q names no file under %s; use a file name such as %s", target, secretsDir, source)
	}
	return path.Clean(strings.TrimLeft(rel, "/")), nil
}

func parseID(s string) (uint32, error) {
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a numeric ID; use a number such as 1000", s)
	}
	return uint32(n), nil
}

// replicas is *n as an int64 pointer, nil when unset.
func replicas(n *int) *int64 {
	if n == nil {
		return nil
	}
	return proto.Int64(int64(*n))
}
