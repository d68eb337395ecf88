package main

import (
	"fmt"
	"io"
	"sync"

	"berth/agent/image"
)

// progressPrinter shows image pull progress, one line per layer state
// change, as docker pull does on a non-terminal.
type progressPrinter struct {
	w     io.Writer
	quiet bool
	mu    sync.Mutex
	last  map[string]string
}

func newProgressPrinter(w io.Writer, quiet bool) *progressPrinter {
	return &progressPrinter{w: w, quiet: quiet, last: map[string]string{}}
}

func (p *progressPrinter) update(pr image.Progress) {
	if p.quiet {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	key := pr.Layer
	if p.last[key] == pr.Status {
		return
	}
	p.last[key] = pr.Status
	switch {
	case pr.Layer == "":
		fmt.Fprintf(p.w, "%s: %s\n", pr.Ref, pr.Status)
	case pr.BytesTotal > 0:
		fmt.Fprintf(p.w, "layer %d/%d %.19s: %s (%s)\n", pr.LayerIndex+1, pr.Layers, pr.Layer, pr.Status, humanBytes(pr.BytesTotal))
	default:
		fmt.Fprintf(p.w, "layer %d/%d %.19s: %s\n", pr.LayerIndex+1, pr.Layers, pr.Layer, pr.Status)
	}
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f kB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
