package validate

import (
	"fmt"

	pb "berth/proto/berth/v1"
)

// Bounds of a task's log files (--log-opt).
const (
	minLogSize  = 1 << 10
	maxLogFiles = 100
)

// logConfig checks the log bounds; zero fields take the defaults.
func logConfig(l *pb.LogConfig) error {
	if s := l.GetMaxSizeBytes(); s != 0 && s < minLogSize {
		return fieldErr("log.max_size_bytes", fmt.Sprintf("%d bytes is too small a log file", s), "use --log-opt max-size=1k or more")
	}
	if f := l.GetMaxFiles(); f < 0 || f > maxLogFiles {
		return fieldErr("log.max_files", fmt.Sprintf("%d files", f), "use --log-opt max-file=N with N from 1 to %d", maxLogFiles)
	}
	return nil
}
