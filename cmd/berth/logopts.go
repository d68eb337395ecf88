package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"berth/internal/flagparse"
	pb "berth/proto/berth/v1"
)

// registerLogOpts adds --log-opt, Docker's flag for the json-file driver's
// max-size and max-file: how much of a task's output its node keeps.
func registerLogOpts(fs *pflag.FlagSet) {
	fs.StringSlice("log-opt", nil, "keep task logs in files of max-size=SIZE (e.g. 10m), max-file=N of them")
}

// applyLogOpts sets the container's log bounds from --log-opt when given.
func applyLogOpts(fs *pflag.FlagSet, c *pb.ContainerSpec) error {
	if !fs.Changed("log-opt") {
		return nil
	}
	opts, _ := fs.GetStringSlice("log-opt")
	cfg := &pb.LogConfig{}
	if c.GetLog() != nil {
		cfg.MaxSizeBytes, cfg.MaxFiles = c.GetLog().GetMaxSizeBytes(), c.GetLog().GetMaxFiles()
	}
	for _, o := range opts {
		k, v, ok := strings.Cut(o, "=")
		switch {
		case !ok:
			return fmt.Errorf("--log-opt %q: use KEY=VALUE (max-size=10m, max-file=3)", o)
		case k == "max-size":
			n, err := flagparse.Bytes("--log-opt max-size", v)
			if err != nil {
				return err
			}
			cfg.MaxSizeBytes = n
		case k == "max-file":
			n, err := strconv.ParseInt(v, 10, 32)
			if err != nil || n < 1 {
				return fmt.Errorf("--log-opt max-file=%s: give a whole number of files, 1 or more", v)
			}
			cfg.MaxFiles = int32(n)
		default:
			return fmt.Errorf("--log-opt %s: unknown option; berth keeps logs in rotated files and takes max-size and max-file", k)
		}
	}
	c.Log = cfg
	return nil
}
