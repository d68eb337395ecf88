package flagparse

import (
	"fmt"
	"strconv"
	"strings"

	pb "berth/proto/berth/v1"
)

// SecretMode is the mode of a secret file when --secret gives none, as
// Docker's: readable by every user of the container.
const SecretMode = 0o444

// Secret reads --secret NAME or the long form
// source=NAME,target=T,uid=U,gid=G,mode=0400 (Docker's syntax; src and
// dst are accepted for source and target). The target defaults to the
// secret's name; the manager checks it stays under /run/secrets.
func Secret(flag, s string) (*pb.SecretReference, error) {
	bad := func(why string) error {
		return fmt.Errorf("--%s %q: %s; want NAME or source=NAME[,target=FILE][,uid=U][,gid=G][,mode=0400]", flag, s, why)
	}
	ref := &pb.SecretReference{Mode: SecretMode}
	if !strings.Contains(s, "=") {
		if s == "" {
			return nil, bad("no secret named")
		}
		ref.SecretName, ref.FileName = s, s
		return ref, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, bad(fmt.Sprintf("%q is not KEY=VALUE", kv))
		}
		var err error
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "source", "src":
			ref.SecretName = v
		case "target", "dst":
			ref.FileName = v
		case "uid":
			err = setUint(&ref.Uid, v)
		case "gid":
			err = setUint(&ref.Gid, v)
		case "mode":
			var m uint64
			m, err = strconv.ParseUint(v, 8, 32)
			if err == nil && m > 0o777 {
				err = fmt.Errorf("mode %s has bits beyond 0777", v)
			}
			ref.Mode = uint32(m)
		default:
			return nil, bad(fmt.Sprintf("unknown key %q", k))
		}
		if err != nil {
			return nil, bad(fmt.Sprintf("%s=%s: %v", k, v, err))
		}
	}
	if ref.SecretName == "" {
		return nil, bad("no source=NAME")
	}
	if ref.FileName == "" {
		ref.FileName = ref.SecretName
	}
	return ref, nil
}
