package seccomp

import (
	"crypto/sha256"
	"slices"
	"strings"
	"sync"
)

// cacheSize bounds the programs a Cache keeps; a node sees few profiles.
const cacheSize = 32

// Cache compiles each pair of profile and capability set once. It is safe
// for concurrent use; the zero value is ready.
type Cache struct {
	mu    sync.Mutex
	progs map[string]*Program
}

// Compile returns the program for profile (Docker's default profile when
// empty, else a profile's JSON) and caps. Callers must not modify it.
func (c *Cache) Compile(profile string, caps []string) (*Program, error) {
	key := cacheKey(profile, caps)
	c.mu.Lock()
	defer c.mu.Unlock()
	if p, ok := c.progs[key]; ok {
		return p, nil
	}
	prof := Default()
	if profile != "" {
		var err error
		if prof, err = Parse([]byte(profile)); err != nil {
			return nil, err
		}
	}
	p, err := prof.Compile(caps)
	if err != nil {
		return nil, err
	}
	if c.progs == nil || len(c.progs) >= cacheSize {
		c.progs = map[string]*Program{}
	}
	c.progs[key] = p
	return p, nil
}

func cacheKey(profile string, caps []string) string {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = capName(c)
	}
	slices.Sort(names)
	sum := sha256.Sum256([]byte(profile))
	return string(sum[:]) + strings.Join(names, ",")
}
