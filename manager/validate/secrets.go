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
