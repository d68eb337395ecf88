package validate

import (
	"fmt"
	"path"
	"strings"

	pb "berth/proto/berth/v1"
)

// MaxConfigSize is the largest config accepted, as Docker's 1000 KiB.
const MaxConfigSize = 1000 * 1024

// ConfigSpec checks a config spec.
func ConfigSpec(s *pb.ConfigSpec) error {
	if s == nil {
		return fieldErr("spec", "missing", "send a config spec")
	}
	return fileSpec("config", s.GetAnnotations(), s.GetData(), MaxConfigSize)
}

// kernelDirs hold the kernel's file systems in every container: a config
// mounted there would hide or be hidden by them.
var kernelDirs = []string{"/proc", "/sys", "/dev"}

// ConfigTarget is where the config ref names appears in its container,
// absolute and cleaned (the form the store keeps). As Docker's, a
// relative target is taken from / and an empty one is /<config name>.
// A target with a ".." element, / itself, or one under /proc, /sys or
// /dev is refused. A ref with neither a target nor a config name returns
// "": its target is the name of the config it resolves to.
func ConfigTarget(field string, ref *pb.ConfigReference) (string, error) {
	t := ref.GetFileName()
	if t == "" {
		t = ref.GetConfigName()
	}
	if t == "" {
		return "", nil
	}
	const fix = "give an absolute file path such as /etc/app.conf"
	if strings.ContainsRune(t, 0) {
		return "", fieldErr(field, "contains a NUL byte", fix)
	}
	for _, elem := range strings.Split(t, "/") {
		if elem == ".." {
			return "", fieldErr(field, fmt.Sprintf("%s contains '..'", quote(t)), fix)
		}
	}
	clean := path.Clean("/" + t)
	if clean == "/" {
		return "", fieldErr(field, fmt.Sprintf("%s names no file", quote(t)), fix)
	}
	for _, d := range kernelDirs {
		if clean == d || strings.HasPrefix(clean, d+"/") {
			return "", fieldErr(field, fmt.Sprintf("%s is under %s, which the kernel's files take", quote(t), d), fix)
		}
	}
	return clean, nil
}
