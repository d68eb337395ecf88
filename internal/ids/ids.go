// Package ids makes the random identifiers of cluster objects: 25
// lowercase base-36 characters (about 128 bits), as swarmkit's, so that
// 12-character prefixes shown in tables are unique in practice.
package ids

import (
	"crypto/rand"
	"math/big"
)

// Len is the length of an ID.
const Len = 25

var max128 = new(big.Int).Lsh(big.NewInt(1), 128)

// New returns a new random ID.
func New() string {
	n, err := rand.Int(rand.Reader, max128)
	if err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	s := n.Text(36)
	for len(s) < Len {
		s = "0" + s
	}
	return s
}
