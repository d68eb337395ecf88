package testhost

import (
	"context"
	"log/slog"
	"strings"
)

// tbHandler is a slog.Handler that writes records to a test's log.
type tbHandler struct {
	t     TB
	attrs []slog.Attr
}

func (h tbHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h tbHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		b.WriteString(" " + a.String())
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.t.Logf("%s", b.String())
	return nil
}

func (h tbHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return tbHandler{t: h.t, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

// WithGroup is not needed by this package's logs; groups are flattened.
func (h tbHandler) WithGroup(string) slog.Handler { return h }
