package image

import (
	"archive/tar"
	"fmt"
)

// Defaults for the bounds on one layer, chosen so that no real image
// meets them while a hostile one cannot take the node down. The largest
// single layers of real images (CUDA and PyTorch development images) unpack
// to 5–10 GiB, and the most crowded (a full TeX Live, a node_modules tree)
// hold a few hundred thousand files. A 64 MiB gzip of zeros, or one sparse
// tar entry, can claim terabytes; a small layer of empty files can use up
// the file system's inodes.
const (
	// DefaultMaxLayerSize bounds the bytes of regular files in one layer.
	DefaultMaxLayerSize = 32 << 30
	// DefaultMaxLayerEntries bounds the tar entries (files, directories,
	// links, whiteouts) of one layer.
	DefaultMaxLayerEntries = 1_000_000
)

// Flags of berth-agent that raise the limits; errors name them.
const (
	flagMaxLayerSize    = "--max-layer-size"
	flagMaxLayerEntries = "--max-layer-entries"
)

// limits are the bounds an unpack enforces; zero means none.
type limits struct {
	bytes   int64
	entries int64
}

// limits resolves the configured bounds: zero means the default, a
// negative value means no limit.
func (c Config) limits() limits {
	pick := func(v, def int64) int64 {
		switch {
		case v == 0:
			return def
		case v < 0:
			return 0
		}
		return v
	}
	return limits{bytes: pick(c.MaxLayerSize, DefaultMaxLayerSize), entries: pick(c.MaxLayerEntries, DefaultMaxLayerEntries)}
}

// count adds entry hdr to the layer's tally and fails, before anything of
// it is written, once the layer goes over a limit.
func (x *extractor) count(hdr *tar.Header) error {
	x.entries++
	if l := x.lim.entries; l > 0 && x.entries > l {
		return newErr(ErrLayerTooLarge, nil, "it has more than %d entries, the node's limit for one layer; raise it with berth-agent %s", l, flagMaxLayerEntries)
	}
	if hdr.Typeflag != tar.TypeReg && hdr.Typeflag != tar.TypeGNUSparse {
		return nil
	}
	if l := x.lim.bytes; l > 0 && hdr.Size > l-x.size {
		return newErr(ErrLayerTooLarge, nil, "its files add up to more than %d bytes (%s), the node's limit for one layer; raise it with berth-agent %s", l, humanBytes(l), flagMaxLayerSize)
	}
	return nil
}

// humanBytes renders n in binary units, e.g. 32.0 GiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
