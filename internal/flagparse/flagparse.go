// Package flagparse reads the values users type on command lines of berth's
// binaries — sizes, CPU amounts, published ports, mounts, labels — into API
// types, with errors that name the flag and show the expected form.
package flagparse

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	pb "berth/proto/berth/v1"
)

// Bytes reads sizes such as 64M, 1.5G or 1048576.
func Bytes(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	mult := int64(1)
	num := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s, "B"), "b"))
	if n := len(num); n > 0 {
		switch num[n-1] {
		case 'K':
			mult, num = 1<<10, num[:n-1]
		case 'M':
			mult, num = 1<<20, num[:n-1]
		case 'G':
			mult, num = 1<<30, num[:n-1]
		case 'T':
			mult, num = 1<<40, num[:n-1]
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f*float64(mult) > math.MaxInt64 {
		return 0, fmt.Errorf("--%s %q: want a size such as 64M or 1G", flag, s)
	}
	return int64(f * float64(mult)), nil
}

// CPUs reads a CPU amount such as 0.5 into nano CPUs.
func CPUs(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e6 {
		return 0, fmt.Errorf("--%s %q: want a number of CPUs such as 0.5 or 2", flag, s)
	}
	return int64(f * 1e9), nil
}

// Port reads -p PUBLISHED:TARGET[/PROTO] or the long form
// published=8080,target=80,protocol=udp,mode=host.
func Port(s string) (*pb.PortConfig, error) {
	bad := fmt.Errorf("--publish %q: want PUBLISHED:TARGET[/tcp|udp] or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host]", s)
	p := &pb.PortConfig{}
	setProto := func(v string) error {
		switch strings.ToLower(v) {
		case "tcp", "":
		case "udp":
			p.Protocol = pb.PortConfig_PROTOCOL_UDP
		default:
			return bad
		}
		return nil
	}
	if strings.Contains(s, "=") {
		for _, kv := range strings.Split(s, ",") {
			k, v, _ := strings.Cut(kv, "=")
			var err error
			switch k {
			case "published":
				err = setUint(&p.PublishedPort, v)
			case "target":
				err = setUint(&p.TargetPort, v)
			case "protocol":
				err = setProto(v)
			case "mode":
				switch v {
				case "ingress":
				case "host":
					p.PublishMode = pb.PortConfig_PUBLISH_MODE_HOST
				default:
					err = bad
				}
			default:
				err = bad
			}
			if err != nil {
				return nil, bad
			}
		}
		return p, nil
	}
	ports, proto, _ := strings.Cut(s, "/")
	if err := setProto(proto); err != nil {
		return nil, err
	}
	pub, target, ok := strings.Cut(ports, ":")
	if !ok {
		target, pub = pub, ""
	}
	if err := setUint(&p.TargetPort, target); err != nil {
		return nil, bad
	}
	if pub != "" {
		if err := setUint(&p.PublishedPort, pub); err != nil {
			return nil, bad
		}
	}
	return p, nil
}

func setUint(dst *uint32, s string) error {
	n, err := strconv.ParseUint(s, 10, 32)
	*dst = uint32(n)
	return err
}

// Mount reads type=volume,source=data,target=/data[,readonly][,tmpfs-size=64M].
func Mount(s string) (*pb.Mount, error) {
	m := &pb.Mount{Type: pb.Mount_TYPE_VOLUME}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "type":
			switch v {
			case "bind":
				m.Type = pb.Mount_TYPE_BIND
			case "volume":
				m.Type = pb.Mount_TYPE_VOLUME
			case "tmpfs":
				m.Type = pb.Mount_TYPE_TMPFS
			default:
				return nil, fmt.Errorf("--mount %q: type is bind, volume or tmpfs", s)
			}
		case "source", "src":
			m.Source = v
		case "target", "dst", "destination":
			m.Target = v
		case "readonly", "ro":
			m.ReadOnly = v == "" || v == "true" || v == "1"
		case "tmpfs-size":
			n, err := Bytes("mount tmpfs-size", v)
			if err != nil {
				return nil, err
			}
			m.TmpfsSizeBytes = n
		default:
			return nil, fmt.Errorf("--mount %q: unknown option %q (use type, source, target, readonly, tmpfs-size)", s, k)
		}
	}
	return m, nil
}

// Network reads --network NAME, or name=NAME[,alias=ALIAS...] as Docker's
// long form: the aliases are extra names the service's tasks answer to on
// that network.
func Network(s string) (*pb.NetworkAttachment, error) {
	if !strings.Contains(s, "=") {
		return &pb.NetworkAttachment{Target: s}, nil
	}
	a := &pb.NetworkAttachment{}
	for _, kv := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "name", "target":
			a.Target = v
		case "alias":
			a.Aliases = append(a.Aliases, v)
		default:
			return nil, fmt.Errorf("--network %q: unknown option %q (use name and alias, e.g. name=back,alias=db)", s, k)
		}
	}
	if a.Target == "" {
		return nil, fmt.Errorf("--network %q: no network name; use name=NETWORK", s)
	}
	return a, nil
}

// Labels turns key=value pairs into a map.
func Labels(flag string, kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	out := map[string]string{}
	for _, kv := range kvs {
		k, v, _ := strings.Cut(kv, "=")
		if k == "" {
			return nil, fmt.Errorf("--%s %q: want key=value", flag, kv)
		}
		out[k] = v
	}
	return out, nil
}
