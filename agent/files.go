package agent

import (
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

// secretStore holds the secret data the managers sent, by secret ID, in
// memory only.
type secretStore struct {
	mu   sync.Mutex
	data map[string][]byte
}

func newSecretStore() *secretStore { return &secretStore{data: map[string][]byte{}} }

func (s *secretStore) set(id string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.data[id] = data
}

func (s *secretStore) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.data, id)
}

func (s *secretStore) get(id string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.data[id]
	return d, ok
}

// tmpfsSecrets writes each task's secrets as files under DIR/<task>/, DIR
// being a tmpfs the agent mounts, so secrets never touch a disk; each file
// is bind-mounted read-only at /run/secrets/<file_name>.
type tmpfsSecrets struct {
	dir   string
	store *secretStore
}

// setup creates the directory and mounts a tmpfs on it unless one is there
// (a restarted agent finds its predecessor's, with the files of running
// tasks).
func (s *tmpfsSecrets) setup() error {
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

// Mounts writes the task's secrets and returns their mounts.
func (s *tmpfsSecrets) Mounts(taskID string, refs []*pb.SecretReference) ([]runtime.Mount, error) {
	if len(refs) == 0 {
		return nil, nil
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
		target, err := secretTarget(ref)
		if err != nil {
			return nil, err
		}
		if !plainName(ref.GetSecretId()) {
			return nil, fmt.Errorf("secret ID %q is not a plain name: it would be written outside %s", ref.GetSecretId(), dir)
		}
		data, ok := s.store.get(ref.GetSecretId())
		if !ok {
			return nil, fmt.Errorf("secret %s (%s) has not reached this node: the managers did not send its data", ref.GetSecretName(), ref.GetSecretId())
		}
		file := filepath.Join(dir, strconv.Itoa(i)+"-"+ref.GetSecretId())
		if err := writeSecret(file, data, ref); err != nil {
			return nil, err
		}
		mounts = append(mounts, runtime.Mount{Type: runtime.MountBind, Source: file, Target: target, ReadOnly: true})
	}
	return mounts, nil
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
	if !filepath.IsLocal(rel) || path.Clean(rel) == "." || slices.Contains(strings.Split(rel, "/"), "..") {
		return "", fmt.Errorf("secret %s: target %q is not a file under %s; use a plain name", ref.GetSecretName(), name, secretsTarget)
	}
	return path.Join(secretsTarget, rel), nil
}

// plainName says whether s names one entry of a directory, so joining it
// to the directory stays inside.
func plainName(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsRune(s, '/')
}

func writeSecret(file string, data []byte, ref *pb.SecretReference) error {
	mode := os.FileMode(ref.GetMode()) & os.ModePerm
	if mode == 0 {
		mode = 0o444
	}
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fmt.Errorf("write secret %s: %w", ref.GetSecretName(), err)
	}
	if err := os.Chown(file, int(ref.GetUid()), int(ref.GetGid())); err != nil {
		return fmt.Errorf("secret %s: %w", ref.GetSecretName(), err)
	}
	if err := os.Chmod(file, mode); err != nil {
		return fmt.Errorf("secret %s: %w", ref.GetSecretName(), err)
	}
	return nil
}

// Remove deletes the task's secret files.
func (s *tmpfsSecrets) Remove(taskID string) error {
	if err := os.RemoveAll(filepath.Join(s.dir, taskID)); err != nil {
		return fmt.Errorf("remove secrets of %s: %w", taskID, err)
	}
	return nil
}

// IDs lists the tasks that have secret files.
func (s *tmpfsSecrets) IDs() []string {
	ents, _ := os.ReadDir(s.dir)
	var ids []string
	for _, e := range ents {
		if e.IsDir() {
			ids = append(ids, e.Name())
		}
	}
	return ids
}
