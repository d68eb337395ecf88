package main

import (
	"fmt"

	"github.com/spf13/pflag"

	"berth/agent/image"
	"berth/internal/flagparse"
)

// layerLimits are the flags bounding what one image layer may unpack to,
// shared by the daemon and `run`.
type layerLimits struct {
	size    string
	entries int64
}

func (l *layerLimits) register(f *pflag.FlagSet) {
	f.StringVar(&l.size, "max-layer-size", fmt.Sprintf("%dG", image.DefaultMaxLayerSize>>30),
		"largest unpacked size of one image layer, e.g. 64G; 0 for no limit")
	f.Int64Var(&l.entries, "max-layer-entries", image.DefaultMaxLayerEntries,
		"most files, directories and links in one image layer; 0 for no limit")
}

// config returns the limits in image.Config's terms (negative: none).
func (l *layerLimits) config() (size, entries int64, err error) {
	if l.size == "" {
		return 0, 0, fmt.Errorf("--max-layer-size must not be empty: give a size such as 32G, or 0 for no limit")
	}
	size, err = flagparse.Bytes("max-layer-size", l.size)
	if err != nil {
		return 0, 0, err
	}
	if l.entries < 0 {
		return 0, 0, fmt.Errorf("--max-layer-entries %d: want a count, or 0 for no limit", l.entries)
	}
	return none(size), none(l.entries), nil
}

// none maps a flag's 0 ("no limit") to image.Config's -1.
func none(v int64) int64 {
	if v == 0 {
		return -1
	}
	return v
}
