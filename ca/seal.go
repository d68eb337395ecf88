package ca

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// ClusterKeySize is the length of the key that seals the CA key and secrets.
const ClusterKeySize = 32

// NewClusterKey makes a random cluster key.
func NewClusterKey() ([]byte, error) {
	k := make([]byte, ClusterKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}
	return k, nil
}

// Seal encrypts plaintext with AES-256-GCM under key; the nonce leads the output.
func Seal(key, plaintext []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, plaintext, nil), nil
}

// Open decrypts what Seal produced.
func Open(key, sealed []byte) ([]byte, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize() {
		return nil, errors.New("sealed data too short")
	}
	nonce, body := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	out, err := aead.Open(nil, nonce, body, nil)
	if err != nil {
		return nil, errors.New("cannot decrypt: wrong cluster key or corrupted data")
	}
	return out, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != ClusterKeySize {
		return nil, fmt.Errorf("cluster key has %d bytes, want %d", len(key), ClusterKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}
