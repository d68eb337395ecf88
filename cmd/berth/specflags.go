package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"

	pb "berth/proto/berth/v1"
)

// parseBytes reads sizes such as 64M, 1.5G or 1048576.
func parseBytes(flag, s string) (int64, error) {
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

// parseCPUs reads a CPU amount such as 0.5 into nano CPUs.
func parseCPUs(flag, s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 0 || f > 1e6 {
		return 0, fmt.Errorf("--%s %q: want a number of CPUs such as 0.5 or 2", flag, s)
	}
	return int64(f * 1e9), nil
}

// parsePort reads -p PUBLISHED:TARGET[/PROTO] or the long form
// published=8080,target=80,protocol=udp,mode=host.
func parsePort(s string) (*pb.PortConfig, error) {
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

// parseMount reads type=volume,source=data,target=/data[,readonly][,tmpfs-size=64M].
func parseMount(s string) (*pb.Mount, error) {
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
			n, err := parseBytes("mount tmpfs-size", v)
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

// parseLabels turns key=value pairs into a map.
func parseLabels(flag string, kvs []string) (map[string]string, error) {
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

// durationFlag is set only when a user gave it.
func durationFlag(fs *pflag.FlagSet, name string, dst **durationpb.Duration) {
	if f := fs.Lookup(name); f != nil && f.Changed {
		d, _ := time.ParseDuration(f.Value.String())
		*dst = durationpb.New(d)
	}
}

func enumFlag[E ~int32](flag, v string, prefix string, names map[string]int32) (E, error) {
	key := prefix + strings.ToUpper(strings.ReplaceAll(v, "-", "_"))
	n, ok := names[key]
	if !ok {
		var opts []string
		for k := range names {
			opts = append(opts, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, prefix), "_", "-")))
		}
		return 0, fmt.Errorf("--%s %q: use one of %s", flag, v, strings.Join(opts, ", "))
	}
	return E(n), nil
}
