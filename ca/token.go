package ca

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// tokenPrefix and the version that follows start every join token:
// BERTH-1-<CA hash>-<secret>.
const tokenPrefix = "BERTH-1-"

// ErrBadToken is returned for a malformed, wrong or rotated join token.
var ErrBadToken = errors.New("invalid join token")

// Token is a parsed join token.
type Token struct {
	// CAHash pins the cluster CA: the hex SHA-256 of its certificate.
	CAHash string
	// Secret admits the node with the role the token was made for.
	Secret string
}

// String renders the token as a user copies it.
func (t Token) String() string { return tokenPrefix + t.CAHash + "-" + t.Secret }

// NewToken makes a join token for the CA with hash caHash.
func NewToken(caHash string) (Token, error) {
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return Token{}, fmt.Errorf("token secret: %w", err)
	}
	return Token{CAHash: caHash, Secret: hex.EncodeToString(b)}, nil
}

// ParseToken checks a token's form and splits it.
func ParseToken(s string) (Token, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, tokenPrefix) {
		return Token{}, fmt.Errorf("%w: it must start with %q (copy it from `berth cluster join-token`)", ErrBadToken, tokenPrefix)
	}
	hash, secret, ok := strings.Cut(strings.TrimPrefix(s, tokenPrefix), "-")
	if !ok || len(hash) != 64 || !isHex(hash) || len(secret) != 40 || !isHex(secret) {
		return Token{}, fmt.Errorf("%w: want BERTH-1-<64 hex CA hash>-<40 hex secret>", ErrBadToken)
	}
	return Token{CAHash: hash, Secret: secret}, nil
}

// Matches reports in constant time whether a presented token equals t.
func (t Token) Matches(presented Token) bool {
	return subtle.ConstantTimeCompare([]byte(t.String()), []byte(presented.String())) == 1
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
