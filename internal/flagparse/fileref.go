package flagparse

import (
	"fmt"
	"strconv"
	"strings"

	pb "berth/proto/berth/v1"
)

// SecretMode is the mode of a secret file when --secret gives none, as
// Docker's: readable by every user of the container. Configs default to
// it too.
const SecretMode = 0o444

// fileRef is what --secret and --config both give: the object, where its
// file goes, and as whom.
type fileRef struct {
	source, target string
	uid, gid, mode uint32
}

// Secret reads --secret NAME or the long form
// source=NAME,target=T,uid=U,gid=G,mode=0400 (Docker's syntax; src and
// dst are accepted for source and target). The target defaults to the
// secret's name; the manager checks it stays under /run/secrets.
func Secret(flag, s string) (*pb.SecretReference, error) {
	r, err := parseFileRef(flag, s, "secret", "FILE")
	if err != nil {
		return nil, err
	}
	if r.target == "" {
		r.target = r.source
	}
	return &pb.SecretReference{SecretName: r.source, FileName: r.target, Uid: r.uid, Gid: r.gid, Mode: r.mode}, nil
}

// Config reads --config NAME or the long form
// source=NAME,target=/PATH,uid=U,gid=G,mode=0440, as Secret does. The
// target defaults to /NAME, as Docker's.
func Config(flag, s string) (*pb.ConfigReference, error) {
	r, err := parseFileRef(flag, s, "config", "/PATH")
	if err != nil {
		return nil, err
	}
	if r.target == "" {
		r.target = "/" + r.source
	}
	return &pb.ConfigReference{ConfigName: r.source, FileName: r.target, Uid: r.uid, Gid: r.gid, Mode: r.mode}, nil
}

func parseFileRef(flag, s, noun, targetName string) (fileRef, error) {
	bad := func(why string) error {
		return fmt.Errorf("--%s %q: %s; want NAME or source=NAME[,target=%s][,uid=U][,gid=G][,mode=0400]", flag, s, why, targetName)
	}
	ref := fileRef{mode: SecretMode}
	if !strings.Contains(s, "=") {
		if s == "" {
			return ref, bad("no " + noun + " named")
		}
		ref.source = s
		return ref, nil
	}
	for _, kv := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return ref, bad(fmt.Sprintf("%q is not KEY=VALUE", kv))
		}
		var err error
		switch strings.ToLower(strings.TrimSpace(k)) {
		case "source", "src":
			ref.source = v
		case "target", "dst":
			ref.target = v
		case "uid":
			err = setUint(&ref.uid, v)
		case "gid":
			err = setUint(&ref.gid, v)
		case "mode":
			var m uint64
			m, err = strconv.ParseUint(v, 8, 32)
			if err == nil && m > 0o777 {
				err = fmt.Errorf("mode %s has bits beyond 0777", v)
			}
			ref.mode = uint32(m)
		default:
			return ref, bad(fmt.Sprintf("unknown key %q", k))
		}
		if err != nil {
			return ref, bad(fmt.Sprintf("%s=%s: %v", k, v, err))
		}
	}
	if ref.source == "" {
		return ref, bad("no source=NAME")
	}
	return ref, nil
}
