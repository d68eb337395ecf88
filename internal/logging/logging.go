// Package logging builds the one slog.Logger a berth binary passes down,
// from the --log-format and --log-level flags every binary shares.
package logging

import (
	"cmp"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/pflag"
)

// Flags are the logging options of a binary.
type Flags struct {
	Format string
	Level  string
}

// Register adds --log-format and --log-level to fs; values already in f
// are the defaults (text and info when empty).
func (f *Flags) Register(fs *pflag.FlagSet) {
	fs.StringVar(&f.Format, "log-format", cmp.Or(f.Format, "text"), "log format: text or json")
	fs.StringVar(&f.Level, "log-level", cmp.Or(f.Level, "info"), "log level: debug, info, warn or error")
}

// New builds a logger writing to w, or says which flag is wrong and how to fix it.
func (f Flags) New(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.Level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", f.Level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch strings.ToLower(f.Format) {
	case "text", "":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format %q: use text or json", f.Format)
	}
}
