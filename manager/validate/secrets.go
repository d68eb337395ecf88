package validate

import (
	"fmt"
	"path"
	"strings"

	pb "berth/proto/berth/v1"
)

// SecretsDir is where secrets appear in a container.
const SecretsDir = "/run/secrets"

// SecretTarget is where the secret ref names appears in its container,
// relative to SecretsDir and cleaned ("db", "conf/db.pem"): the form the
// store keeps. A target may be given absolute, under SecretsDir; one with
// a ".." element, or outside SecretsDir, or naming SecretsDir itself, is
// refused. A ref with neither a target nor a secret name returns "": its
// target is the name of the secret it resolves to.
func SecretTarget(field string, ref *pb.SecretReference) (string, error) {
	t := ref.GetFileName()
	if t == "" {
		t = ref.GetSecretName()
	}
	if t == "" {
		return "", nil
	}
	const fix = "use a file name such as db_password, which appears as " + SecretsDir + "/db_password"
	if strings.ContainsRune(t, 0) {
		return "", fieldErr(field, "contains a NUL byte", fix)
	}
	rel := t
	if path.IsAbs(t) {
		var ok bool
		if rel, ok = strings.CutPrefix(t, SecretsDir+"/"); !ok {
			return "", fieldErr(field, fmt.Sprintf("%s is outside %s", quote(t), SecretsDir), fix)
		}
		rel = strings.TrimLeft(rel, "/")
	}
	for _, elem := range strings.Split(rel, "/") {
		if elem == ".." {
			return "", fieldErr(field, fmt.Sprintf("%s contains '..'", quote(t)), fix)
		}
	}
	clean := path.Clean(rel)
	if clean == "." {
		return "", fieldErr(field, fmt.Sprintf("%s names no file under %s", quote(t), SecretsDir), fix)
	}
	return clean, nil
}

// secrets checks a container's secret references: each names a secret
// and a target of its own.
func secrets(refs []*pb.SecretReference) error {
	targets := map[string]bool{}
	for i, s := range refs {
		f := fmt.Sprintf("secrets[%d]", i)
		if s.GetSecretName() == "" && s.GetSecretId() == "" {
			return fieldErr(f, "no secret named", "name a secret created with `berth secret create`")
		}
		if s.GetMode() > 0o777 {
			return fieldErr(f+".mode", fmt.Sprintf("%#o has bits beyond 0777", s.GetMode()), "give permission bits only, such as 0400")
		}
		t, err := SecretTarget(f+".target", s)
		if err != nil {
			return err
		}
		if t != "" && targets[t] {
			return fieldErr(f+".target", fmt.Sprintf("%s/%s is the target of another secret", SecretsDir, t), "give each secret its own target")
		}
		targets[t] = true
	}
	return nil
}
