package agent

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"berth/agent/runtime"
	pb "berth/proto/berth/v1"
)

// secretsTarget is where secrets appear inside a container.
const secretsTarget = "/run/secrets"

// Secrets and configs are both files the managers send for the tasks that
// name them: the agent keeps their data in memory, writes each task's to
// a tmpfs and bind-mounts them read-only into its container. Configs take
// any absolute target; secrets only targets under /run/secrets.

// fileKey names one secret's or config's data.
type fileKey struct {
	config bool
	id     string
}

func (k fileKey) noun() string {
	if k.config {
		return "config"
	}
	return "secret"
}

// fileStore holds the secret and config data the managers sent, in
// memory only.
type fileStore struct {
	mu   sync.Mutex
	data map[fileKey][]byte
}

func newFileStore() *fileStore { return &fileStore{data: map[fileKey][]byte{}} }

func (s *fileStore) set(k fileKey, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[k] = data
}

func (s *fileStore) remove(k fileKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, k)
}

func (s *fileStore) get(k fileKey) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.data[k]
	return d, ok
}

// retain forgets the data of every object keep does not hold.
func (s *fileStore) retain(keep map[fileKey]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.data {
		if !keep[k] {
			delete(s.data, k)
		}
	}
}

// fileOf returns the secret or config a change is about, and its data if
// it has any.
func fileOf(ch *pb.AssignmentChange) (fileKey, []byte, bool) {
	switch {
	case ch.GetSecretData() != nil:
		return fileKey{id: ch.GetSecretData().GetSecretId()}, ch.GetSecretData().GetData(), true
	case ch.GetSecret() != nil:
		return fileKey{id: ch.GetSecret().GetId()}, nil, true
	case ch.GetConfigData() != nil:
		return fileKey{config: true, id: ch.GetConfigData().GetConfigId()}, ch.GetConfigData().GetData(), true
	case ch.GetConfig() != nil:
		return fileKey{config: true, id: ch.GetConfig().GetId()}, nil, true
	}
	return fileKey{}, nil, false
}

// fileRef is a secret or config reference: which data, where, as whom.
type fileRef struct {
	key            fileKey
	name, target   string
	uid, gid, mode uint32
}

// fileRefs lists a container's secrets and configs, each with its target
// in the container, checked: whatever the task says, a secret lands under
// /run/secrets and a config at a clean absolute path.
func fileRefs(c *pb.ContainerSpec) ([]fileRef, error) {
	var out []fileRef
	for _, r := range c.GetSecrets() {
		t, err := secretTarget(r)
		if err != nil {
			return nil, err
		}
		out = append(out, fileRef{key: fileKey{id: r.GetSecretId()}, name: r.GetSecretName(), target: t, uid: r.GetUid(), gid: r.GetGid(), mode: r.GetMode()})
	}
	for _, r := range c.GetConfigs() {
		t, err := configTarget(r)
		if err != nil {
			return nil, err
		}
		out = append(out, fileRef{key: fileKey{config: true, id: r.GetConfigId()}, name: r.GetConfigName(), target: t, uid: r.GetUid(), gid: r.GetGid(), mode: r.GetMode()})
	}
	return out, nil
}

// secretTarget is the path a secret appears at in the container: always
// below /run/secrets, whatever the task says. Managers store targets
// relative to it; older ones stored some absolute, under it.
func secretTarget(ref *pb.SecretReference) (string, error) {
	name := ref.GetFileName()
	if name == "" {
		name = ref.GetSecretName()
	}
	rel := name
	if path.IsAbs(name) {
		rel, _ = strings.CutPrefix(name, secretsTarget+"/")
	}
	if !localPath(rel) {
		return "", fmt.Errorf("secret %s: target %q is not a file under %s; use a plain name", ref.GetSecretName(), name, secretsTarget)
	}
	return path.Join(secretsTarget, rel), nil
}

// configTarget is the path a config appears at in the container: the
// absolute path managers store, refused unless clean of "..".
func configTarget(ref *pb.ConfigReference) (string, error) {
	name := ref.GetFileName()
	if name == "" {
		name = "/" + ref.GetConfigName()
	}
	if !path.IsAbs(name) || !localPath(strings.TrimLeft(name, "/")) {
		return "", fmt.Errorf("config %s: target %q is not an absolute file path; use one such as /etc/app.conf", ref.GetConfigName(), name)
	}
	return path.Clean(name), nil
}

// localPath says whether rel names a file below a directory, never the
// directory itself nor a path through "..".
func localPath(rel string) bool {
	return filepath.IsLocal(rel) && path.Clean(rel) != "." && !slices.Contains(strings.Split(rel, "/"), "..")
}

// plainName says whether s names one entry of a directory, so joining it
// to the directory stays inside.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsRune(s, '/')
}

// tmpfsFiles writes each task's secrets and configs as files under
// DIR/<task>/, DIR being a tmpfs the agent mounts, so secrets never touch
// a disk; each file is bind-mounted read-only at its target.
type tmpfsFiles struct {
	dir   string
	store *fileStore
}

// setup creates the directory and mounts a tmpfs on it unless one is there
// (a restarted agent finds its predecessor's, with the files of running
// tasks).
func (s *tmpfsFiles) setup() error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("secrets dir: %w", err)
	}
	mounted, err := mountinfo.Mounted(s.dir)
	if err != nil {
		return fmt.Errorf("secrets dir %s: %w", s.dir, err)
	}
	if mounted {
		return nil
	}
	if err := unix.Mount("tmpfs", s.dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0700"); err != nil {
		return fmt.Errorf("mount tmpfs for secrets on %s: %w", s.dir, err)
	}
	return nil
}

// teardown unmounts the tmpfs when the agent stops, so a clean stop leaves
// no mount behind. Running containers keep the files they mounted (their
// bind mounts hold the tmpfs); the next agent mounts a new one.
func (s *tmpfsFiles) teardown() error {
	if err := unix.Unmount(s.dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount secrets tmpfs %s: %w", s.dir, err)
	}
	return nil
}

// Mounts writes the task's secrets and configs and returns their mounts.
func (s *tmpfsFiles) Mounts(taskID string, c *pb.ContainerSpec) ([]runtime.Mount, error) {
	refs, err := fileRefs(c)
	if err != nil || len(refs) == 0 {
		return nil, err
	}
	if !plainName(taskID) {
		return nil, fmt.Errorf("task ID %q is not a plain name: its secrets would be written outside %s", taskID, s.dir)
	}
	dir := filepath.Join(s.dir, taskID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("secrets of %s: %w", taskID, err)
	}
	var mounts []runtime.Mount
	for i, ref := range refs {
		noun := ref.key.noun()
		if !plainName(ref.key.id) {
			return nil, fmt.Errorf("%s ID %q is not a plain name: it would be written outside %s", noun, ref.key.id, dir)
		}
		data, ok := s.store.get(ref.key)
		if !ok {
			return nil, fmt.Errorf("%s %s (%s) has not reached this node: the managers did not send its data", noun, ref.name, ref.key.id)
		}
		file := filepath.Join(dir, strconv.Itoa(i)+"-"+ref.key.id)
		if err := writeFile(file, data, ref); err != nil {
			return nil, err
		}
		mounts = append(mounts, runtime.Mount{Type: runtime.MountBind, Source: file, Target: ref.target, ReadOnly: true})
	}
	return mounts, nil
}

func writeFile(file string, data []byte, ref fileRef) error {
	mode := os.FileMode(ref.mode) & os.ModePerm
	if mode == 0 {
		mode = 0o444
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fmt.Errorf("write %s %s: %w", ref.key.noun(), ref.name, err)
	}
	if err := os.Chown(file, int(ref.uid), int(ref.gid)); err != nil {
		return fmt.Errorf("%s %s: %w", ref.key.noun(), ref.name, err)
	}
	if err := os.Chmod(file, mode); err != nil {
		return fmt.Errorf("%s %s: %w", ref.key.noun(), ref.name, err)
	}
	return nil
}

// Remove deletes the task's secret and config files.
func (s *tmpfsFiles) Remove(taskID string) error {
	if err := os.RemoveAll(filepath.Join(s.dir, taskID)); err != nil {
		return fmt.Errorf("remove secrets of %s: %w", taskID, err)
	}
	return nil
}

// IDs lists the tasks that have secret or config files.
func (s *tmpfsFiles) IDs() []string {
	ents, _ := os.ReadDir(s.dir)
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids
}
