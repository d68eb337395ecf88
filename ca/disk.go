package ca

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File names of a node's identity inside its certificate directory.
const (
	RootFile = "ca.pem"
	CertFile = "cert.pem"
	KeyFile  = "key.pem"
)

// Dir is a directory holding a node's identity: the cluster's CA
// certificate, the node certificate and its key.
type Dir string

// Exists reports whether the directory holds a complete identity.
func (d Dir) Exists() bool {
	for _, f := range []string{RootFile, CertFile, KeyFile} {
		if _, err := os.Stat(filepath.Join(string(d), f)); err != nil {
			return false
		}
	}
	return true
}

// Load reads the identity and returns credentials for it.
func (d Dir) Load() (*Credentials, error) {
	root, cert, key, err := d.Read()
	if err != nil {
		return nil, err
	}
	c, err := NewCredentials(root, cert, key)
	if err != nil {
		return nil, fmt.Errorf("identity in %s: %w", d, err)
	}
	return c, nil
}

// Read returns the PEM files of the identity.
func (d Dir) Read() (root, cert, key []byte, err error) {
	out := make([][]byte, 3)
	for i, f := range []string{RootFile, CertFile, KeyFile} {
		if out[i], err = os.ReadFile(filepath.Join(string(d), f)); err != nil {
			return nil, nil, nil, fmt.Errorf("read identity: %w", err)
		}
	}
	return out[0], out[1], out[2], nil
}

// Save writes the identity atomically (each file renamed into place), the
// key readable by its owner only.
func (d Dir) Save(root, cert, key []byte) error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	// The key goes last so that a crash leaves either the old pair or a
	// new certificate whose key mismatch Load reports, never a silent mix.
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{RootFile, root, 0o644}, {CertFile, cert, 0o644}, {KeyFile, key, 0o600}} {
		if err := WriteFileAtomic(filepath.Join(string(d), f.name), f.data, f.mode); err != nil {
			return err
		}
	}
	return nil
}

// WriteFileAtomic writes data to a temporary file, syncs it and renames it
// over path, so readers see the old or the new content, never a part.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return errors.Join(fmt.Errorf("write %s", path), err)
	}
	return nil
}
