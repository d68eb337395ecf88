package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"google.golang.org/protobuf/types/known/durationpb"
)

// durationFlag is set only when a user gave it.
func durationFlag(fs *pflag.FlagSet, name string, dst **durationpb.Duration) {
	if f := fs.Lookup(name); f != nil && f.Changed {
		d, _ := time.ParseDuration(f.Value.String())
		*dst = durationpb.New(d)
	}
}

func enumFlag[E ~int32](flag, v string, prefix string, names map[string]int32) (E, error) {
	key := prefix + strings.ToUpper(strings.ReplaceAll(v, "-", "_"))
	n, ok := names[key]
	if !ok {
		var opts []string
		for k := range names {
			opts = append(opts, strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(k, prefix), "_", "-")))
		}
		return 0, fmt.Errorf("--%s %q: use one of %s", flag, v, strings.Join(opts, ", "))
	}
	return E(n), nil
}
