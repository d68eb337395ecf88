package agent

import (
	"fmt"
	"sync"
	"time"

	"berth/agent/image"
)

// pullProgress turns per-layer pull progress into "pulling 3/5 MB",
// at most a few times a second.
type pullProgress struct {
	mu     sync.Mutex
	now    func() time.Time
	emit   func(string)
	layers map[string][2]int64
	last   time.Time
	msg    string
	closed bool
}

// close stops further messages; a shared pull may still send progress.
func (p *pullProgress) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

func newPullProgress(now func() time.Time, emit func(string)) *pullProgress {
	return &pullProgress{now: now, emit: emit, layers: map[string][2]int64{}}
}

func (p *pullProgress) update(pr image.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if pr.Layer != "" && pr.BytesTotal > 0 {
		p.layers[pr.Layer] = [2]int64{pr.BytesDone, pr.BytesTotal}
	}
	var done, total int64
	for _, l := range p.layers {
		done, total = done+l[0], total+l[1]
	}
	if total == 0 {
		return
	}
	msg := fmt.Sprintf("pulling %s/%s", mb(done), mbUnit(total))
	if msg == p.msg || p.now().Sub(p.last) < 250*time.Millisecond && done < total {
		return
	}
	p.msg, p.last = msg, p.now()
	p.emit(msg)
}

func mb(n int64) string     { return fmt.Sprintf("%.1f", float64(n)/(1<<20)) }
func mbUnit(n int64) string { return mb(n) + " MB" }
