package discovery

import (
	"bytes"
	"context"
	"log"
	"log/slog"
	"strings"
)

// slogWriter turns memberlist's log lines ("[WARN] memberlist: text") into
// slog records at the matching level. memberlist only takes a *log.Logger,
// and its Printf calls write one line per Write.
type slogWriter struct {
	logger *slog.Logger
}

// newMemberlistLogger returns a *log.Logger for memberlist that forwards to
// logger.
func newMemberlistLogger(logger *slog.Logger) *log.Logger {
	return log.New(slogWriter{logger: logger.With("component", "memberlist")}, "", 0)
}

// Write logs each line of p; it never fails, so memberlist never blocks on
// or reacts to logging.
func (w slogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(bytes.TrimRight(p, "\n"), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		level, msg := parseMemberlistLine(string(line))
		// memberlist logs from its own goroutines and carries no context.
		w.logger.Log(context.Background(), level, msg)
	}
	return len(p), nil
}

// parseMemberlistLine splits "[LEVEL] memberlist: message" into a slog
// level and the message; lines without a level tag log at Info.
func parseMemberlistLine(line string) (slog.Level, string) {
	level := slog.LevelInfo
	if strings.HasPrefix(line, "[") {
		if end := strings.IndexByte(line, ']'); end > 0 {
			level = levelOf(line[1:end])
			line = strings.TrimSpace(line[end+1:])
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	return level, line
}

func levelOf(tag string) slog.Level {
	switch strings.ToUpper(tag) {
	case "TRACE", "DEBUG":
		return slog.LevelDebug
	case "WARN", "WARNING":
		return slog.LevelWarn
	case "ERR", "ERROR":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}
