package discovery

import (
	"context"
	"time"
)

// deliver moves queued events to the Events channel until Shutdown or
// ctx ends; it owns closing the channel.
func (g *Gossip) deliver(ctx context.Context) {
	defer close(g.events)
	for {
		for e, ok := g.d.queue.pop(); ok; e, ok = g.d.queue.pop() {
			select {
			case g.events <- e:
			case <-g.done:
				return
			case <-ctx.Done():
				g.haltOnCancel()
				return
			}
		}
		select {
		case <-g.d.queue.wake:
		case <-g.done:
			return
		case <-ctx.Done():
			g.haltOnCancel()
			return
		}
	}
}

// haltOnCancel stops the member because Start's context ended. Nobody
// waits for an answer here, so a failure to close the sockets is logged.
func (g *Gossip) haltOnCancel() {
	if err := g.halt(); err != nil {
		g.logger.Warn("stop gossip after context end", "err", err)
	}
}

// reconnect re-joins one dead member per ReconnectInterval, round-robin.
// memberlist stops gossiping to dead members after a while, so without
// this two sides of a healed network cut would each keep the other dead;
// a join makes the "dead" member hear of its death and refute it.
func (g *Gossip) reconnect(ctx context.Context) {
	t := time.NewTicker(g.timing.ReconnectInterval)
	defer t.Stop()
	next := 0
	for {
		select {
		case <-t.C:
		case <-g.done:
			return
		case <-ctx.Done():
			return
		}
		g.mu.Lock()
		left, ml := g.left, g.ml
		g.mu.Unlock()
		dead := g.d.deadSince(g.timing.ReconnectFor)
		if left || len(dead) == 0 {
			continue
		}
		m := dead[next%len(dead)]
		next++
		if _, err := ml.Join([]string{m.Addr}); err != nil {
			g.logger.Debug("reconnect to dead gossip member", "to", m.NodeID, "addr", m.Addr, "err", flatten(err))
		}
	}
}
