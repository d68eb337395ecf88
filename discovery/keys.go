package discovery

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/hashicorp/memberlist"
)

// Keys returns the key this member encrypts with and the others it
// accepts from peers.
func (g *Gossip) Keys() (primary []byte, accept [][]byte) {
	keys := slices.Clone(g.keyring.GetKeys())
	if len(keys) == 0 {
		return nil, nil
	}
	return keys[0], keys[1:]
}

// SetKeys makes primary the key this member encrypts with, accepts
// primary and accept from peers, and drops every other key. It works
// before and after Start, without interrupting gossip.
//
// Rotating the cluster's key without a blip takes three rounds, each
// reaching every member before the next starts: install the new key as
// accepted (SetKeys(old, new)); make it primary (SetKeys(new, old)); drop
// the old one (SetKeys(new)). At every moment each member then decrypts
// what every other member sends, so no live member is suspected.
func (g *Gossip) SetKeys(primary []byte, accept [][]byte) error {
	for i, k := range append([][]byte{primary}, accept...) {
		if len(k) != KeySize {
			return fmt.Errorf("gossip key %d is %d bytes, want %d (AES-256)", i, len(k), KeySize)
		}
	}
	return syncKeyring(g.keyring, primary, accept)
}

// newKeyring holds primary first, then accept.
func newKeyring(primary []byte, accept [][]byte) (*memberlist.Keyring, error) {
	k, err := memberlist.NewKeyring(nil, bytes.Clone(primary))
	if err != nil {
		return nil, fmt.Errorf("gossip keyring: %w", err)
	}
	if err := syncKeyring(k, primary, accept); err != nil {
		return nil, err
	}
	return k, nil
}

// syncKeyring makes k hold exactly primary (used to encrypt) and accept.
//
// memberlist's RemoveKey shifts the keyring's slice in place while
// decrypting goroutines read that slice without the lock; removing the
// last key shifts nothing. So the keys to keep are first brought to the
// front, each by UseKey (which builds a fresh slice), the primary last,
// and the keys to drop are removed from the end. The keys made primary on
// the way are ones peers accept; in a rotation there is nothing to drop
// except after the new key is primary, and then no detour is needed.
func syncKeyring(k *memberlist.Keyring, primary []byte, accept [][]byte) error {
	want := append([][]byte{bytes.Clone(primary)}, accept...)
	for _, key := range want {
		if err := k.AddKey(bytes.Clone(key)); err != nil {
			return fmt.Errorf("gossip keyring: %w", err)
		}
	}
	keep := func(key []byte) bool {
		return slices.ContainsFunc(want, func(w []byte) bool { return bytes.Equal(w, key) })
	}
	keys := k.GetKeys()
	drop := len(keys) - len(uniqueKeys(want))
	if drop > 0 && !droppedAtEnd(keys, drop, keep) {
		for i := len(want) - 1; i > 0; i-- {
			if err := k.UseKey(want[i]); err != nil {
				return fmt.Errorf("gossip keyring: %w", err)
			}
		}
	}
	if err := k.UseKey(want[0]); err != nil {
		return fmt.Errorf("gossip keyring: %w", err)
	}
	for keys := k.GetKeys(); len(keys) > 1 && !keep(keys[len(keys)-1]); keys = k.GetKeys() {
		if err := k.RemoveKey(keys[len(keys)-1]); err != nil {
			return fmt.Errorf("gossip keyring: %w", err)
		}
	}
	return nil
}

// droppedAtEnd says whether the keys to drop are already the last n, and
// the primary-to-be is not among them.
func droppedAtEnd(keys [][]byte, n int, keep func([]byte) bool) bool {
	for i, key := range keys {
		if keep(key) == (i >= len(keys)-n) {
			return false
		}
	}
	return true
}

func uniqueKeys(keys [][]byte) [][]byte {
	var out [][]byte
	for _, k := range keys {
		if !slices.ContainsFunc(out, func(o []byte) bool { return bytes.Equal(o, k) }) {
			out = append(out, k)
		}
	}
	return out
}
