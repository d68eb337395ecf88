package validate

import (
	"fmt"
	"path"

	pb "berth/proto/berth/v1"
)

// fileRef is what secret and config references share: the object they
// name and the file it becomes in a container. Both kinds are checked by
// the same code through it.
type fileRef struct {
	id, name, target string
	mode             uint32
}

// fileKind is one kind of object a container takes as files.
type fileKind struct {
	noun   string // "secret", "config"
	field  string // "secrets", "configs"
	maxLen int    // how many a container may name
	// place is the absolute path ref's file takes in the container, or ""
	// when the ref names none yet (the object's name is its target).
	place func(field string, ref fileRef) (string, error)
}

var (
	secretKind = fileKind{noun: "secret", field: "secrets", maxLen: maxSecrets, place: func(field string, r fileRef) (string, error) {
		t, err := SecretTarget(field, &pb.SecretReference{SecretName: r.name, FileName: r.target})
		if err != nil || t == "" {
			return "", err
		}
		return path.Join(SecretsDir, t), nil
	}}
	configKind = fileKind{noun: "config", field: "configs", maxLen: maxConfigs, place: func(field string, r fileRef) (string, error) {
		return ConfigTarget(field, &pb.ConfigReference{ConfigName: r.name, FileName: r.target})
	}}
)

func secretRefs(refs []*pb.SecretReference) []fileRef {
	out := make([]fileRef, len(refs))
	for i, r := range refs {
		out[i] = fileRef{id: r.GetSecretId(), name: r.GetSecretName(), target: r.GetFileName(), mode: r.GetMode()}
	}
	return out
}

func configRefs(refs []*pb.ConfigReference) []fileRef {
	out := make([]fileRef, len(refs))
	for i, r := range refs {
		out[i] = fileRef{id: r.GetConfigId(), name: r.GetConfigName(), target: r.GetFileName(), mode: r.GetMode()}
	}
	return out
}

// containerFiles checks a container's secret and config references: each
// names its object, has permission bits only, and a target no other secret
// or config takes.
func containerFiles(c *pb.ContainerSpec) error {
	taken := map[string]string{}
	if err := fileRefs(secretKind, secretRefs(c.GetSecrets()), taken); err != nil {
		return err
	}
	return fileRefs(configKind, configRefs(c.GetConfigs()), taken)
}

// fileRefs checks refs of kind k; taken maps the targets seen so far to
// the kind that took them.
func fileRefs(k fileKind, refs []fileRef, taken map[string]string) error {
	for i, r := range refs {
		f := fmt.Sprintf("%s[%d]", k.field, i)
		if r.name == "" && r.id == "" {
			return fieldErr(f, "no "+k.noun+" named", "name a %s created with `berth %s create`", k.noun, k.noun)
		}
		if r.mode > 0o777 {
			return fieldErr(f+".mode", fmt.Sprintf("%#o has bits beyond 0777", r.mode), "give permission bits only, such as 0400")
		}
		t, err := k.place(f+".target", r)
		if err != nil {
			return err
		}
		if t == "" {
			continue
		}
		if other, ok := taken[t]; ok {
			return fieldErr(f+".target", fmt.Sprintf("%s is the target of another %s", t, other), "give each secret and config its own target")
		}
		taken[t] = k.noun
	}
	return nil
}

// fileLimits bounds the sizes in a container's secret and config references.
func fileLimits(k fileKind, refs []fileRef) error {
	if err := tooMany(k.field, len(refs), k.maxLen, "use fewer "+k.field+", or bundle related ones into one"); err != nil {
		return err
	}
	for i, r := range refs {
		f := fmt.Sprintf("%s[%d]", k.field, i)
		if err := firstErr(shortLen(f+".id", r.id), shortLen(f+".name", r.name), tooLong(f+".target", r.target, maxPath)); err != nil {
			return err
		}
	}
	return nil
}

// fileSpec checks what secret and config specs share: a name, labels,
// and data that is neither empty nor over max bytes.
func fileSpec(noun string, a *pb.Annotations, data []byte, max int) error {
	if err := Name("name", a.GetName()); err != nil {
		return err
	}
	if err := labels("labels", a.GetLabels()); err != nil {
		return err
	}
	if len(data) == 0 {
		return fieldErr("data", noun+" is empty", "give the %s's content", noun)
	}
	if len(data) > max {
		return fieldErr("data", fmt.Sprintf("%d bytes is larger than %d", len(data), max), "keep %ss under %d KiB", noun, max/1024)
	}
	return nil
}
