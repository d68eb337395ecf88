package discovery

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// ErrClosed is returned by calls on a Gossip that was shut down.
var ErrClosed = errors.New("gossip is shut down")

// ErrNotStarted is returned by calls that need Start first.
var ErrNotStarted = errors.New("gossip is not started")

type lifecycle int

const (
	stateNew lifecycle = iota
	stateStarted
	stateClosed
)

// Gossip is this node's membership in the cluster's gossip pool: it
// detects failed members and reports them as events.
type Gossip struct {
	cfg    GossipConfig
	timing Timing
	logger *slog.Logger
	d      *delegate
	events chan Event
	done   chan struct{}
	// keyring holds the keys memberlist encrypts and decrypts with; it is
	// safe for concurrent use, and SetKeys changes it while gossip runs.
	keyring *memberlist.Keyring

	// leaving serialises Leave against shutting memberlist down.
	leaving sync.Mutex

	mu    sync.Mutex
	state lifecycle
	left  bool
	ml    *memberlist.Memberlist
	wg    sync.WaitGroup
	stop  sync.Once
}

// NewGossip validates cfg and prepares a member; Start binds the sockets.
func NewGossip(cfg GossipConfig) (*Gossip, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	keyring, err := newKeyring(cfg.Key, cfg.AcceptKeys)
	if err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	cfg.Key, cfg.AcceptKeys = nil, nil // the keyring holds them from now on
	cfg.Meta = maps.Clone(cfg.Meta)
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	logger = logger.With("node", cfg.NodeID)
	meta := nodeMeta{Role: cfg.Role, APIAddr: cfg.APIAddr, Meta: cfg.Meta}
	encoded, err := encodeMeta(meta)
	if err != nil {
		return nil, fmt.Errorf("gossip config: %w", err)
	}
	return &Gossip{
		cfg:     cfg,
		timing:  cfg.Timing.withDefaults(),
		logger:  logger,
		d:       newDelegate(cfg.NodeID, meta, encoded, logger),
		events:  make(chan Event),
		done:    make(chan struct{}),
		keyring: keyring,
	}, nil
}

// Start binds the gossip sockets and starts probing. The member runs until
// Shutdown is called or ctx ends; when ctx ends it stops as by Shutdown,
// without a leave message (call Leave first to go gracefully).
func (g *Gossip) Start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case stateStarted:
		return fmt.Errorf("start gossip %s: already started", g.cfg.NodeID)
	case stateClosed:
		return fmt.Errorf("start gossip %s: %w", g.cfg.NodeID, ErrClosed)
	}
	mc := g.cfg.memberlistConfig(g.timing, g.d, g.keyring, g.logger)
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("start gossip %s on %s:%d: %w", g.cfg.NodeID, mc.BindAddr, g.cfg.BindPort, err)
	}
	g.ml = ml
	g.state = stateStarted
	g.goLocked(func() { g.deliver(ctx) })
	g.goLocked(func() { g.reconnect(ctx) })
	g.logger.Debug("gossip started", "addr", hostPort(ml.LocalNode()))
	return nil
}

// Join contacts the given peers (host:port of their gossip sockets) and
// merges their view of the cluster. It returns how many peers answered;
// one is enough. It fails when none did, e.g. because every address is
// wrong or this node does not hold the cluster's gossip key.
func (g *Gossip) Join(ctx context.Context, peers []string) (int, error) {
	if len(peers) == 0 {
		return 0, fmt.Errorf("join gossip: no peers given")
	}
	type result struct {
		n   int
		err error
	}
	ch := make(chan result, 1)
	err := g.goStarted(func(ml *memberlist.Memberlist) {
		n, err := ml.Join(peers)
		ch <- result{n, err}
	})
	if err != nil {
		return 0, fmt.Errorf("join gossip via %s: %w", strings.Join(peers, ","), err)
	}
	select {
	case r := <-ch:
		if r.n == 0 {
			return 0, fmt.Errorf("join gossip via %s: none of the %d peers answered (check the addresses, and that this node has the cluster's gossip key): %w",
				strings.Join(peers, ","), len(peers), flatten(r.err))
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("join gossip via %s: %w", strings.Join(peers, ","), ctx.Err())
	}
}

// Leave tells the other members this node is going away, so they report a
// Leave rather than a Dead, and waits (bounded by ctx, or Timing's
// BroadcastTimeout without a deadline) until that is gossiped. The member
// cannot rejoin afterwards; call Shutdown next.
func (g *Gossip) Leave(ctx context.Context) error {
	// memberlist panics on a leave after shutdown; halt takes leaving too.
	g.leaving.Lock()
	defer g.leaving.Unlock()
	ml, err := g.startedMemberlist()
	if err != nil {
		return fmt.Errorf("leave gossip: %w", err)
	}
	g.mu.Lock()
	already := g.left
	g.left = true
	g.mu.Unlock()
	if already {
		return nil
	}
	g.announceLeave(ctx, ml)
	if err := ml.Leave(g.broadcastTimeout(ctx)); err != nil {
		return fmt.Errorf("leave gossip: %w", err)
	}
	return nil
}

// announceLeave sends the leave intent to every live member over TCP and
// waits until all were sent or ctx ends. Direct sends, unlike a gossiped
// broadcast, reach every member before memberlist's own leave message is
// even queued.
func (g *Gossip) announceLeave(ctx context.Context, ml *memberlist.Memberlist) {
	msg := append([]byte{msgLeaveIntent}, g.cfg.NodeID...)
	var peers []memberlist.Node
	for _, n := range ml.Members() {
		if n.Name != g.cfg.NodeID {
			peers = append(peers, *n)
		}
	}
	all := make(chan struct{})
	err := g.goStarted(func(ml *memberlist.Memberlist) {
		defer close(all)
		var sends sync.WaitGroup
		for _, n := range peers {
			sends.Go(func() {
				if err := ml.SendReliable(&n, msg); err != nil {
					g.logger.Debug("send leave intent", "to", n.Name, "err", err)
				}
			})
		}
		sends.Wait()
	})
	if err != nil {
		return
	}
	select {
	case <-all:
	case <-ctx.Done():
		return
	}
	// A send returns once the bytes are written; each receiver hands the
	// intent to its delegate on a goroutine of its own, which a busy box
	// may run after memberlist's leave broadcast. Give the intents a
	// moment to land: it costs a graceful leave a fraction of a second
	// and spares the others a false "dead".
	select {
	case <-time.After(leaveSettle):
	case <-ctx.Done():
	}
}

// leaveSettle is how long a leaving member waits between announcing its
// intent and leaving.
const leaveSettle = 250 * time.Millisecond

// Shutdown stops the member at once, without a leave message: to the
// others it looks like a failure. It closes the Events channel and waits
// for the package's goroutines. Safe to call more than once.
func (g *Gossip) Shutdown() error {
	g.mu.Lock()
	prev := g.state
	g.state = stateClosed
	g.mu.Unlock()
	if prev == stateNew {
		g.stop.Do(func() { close(g.done) })
		close(g.events)
		return nil
	}
	err := g.halt()
	g.wg.Wait()
	return err
}

// halt marks the member closed and shuts memberlist down, once.
func (g *Gossip) halt() error {
	var err error
	g.stop.Do(func() {
		close(g.done)
		g.mu.Lock()
		g.state = stateClosed
		ml := g.ml
		g.mu.Unlock()
		if ml != nil {
			g.leaving.Lock()
			defer g.leaving.Unlock()
			if e := ml.Shutdown(); e != nil {
				err = fmt.Errorf("shut down gossip %s: %w", g.cfg.NodeID, e)
			}
		}
	})
	return err
}

// Events delivers changes of other members. Delivery never blocks gossip:
// while the consumer is slow, events coalesce per node to the latest
// (see eventQueue). The channel is closed by Shutdown.
func (g *Gossip) Events() <-chan Event { return g.events }

// Members returns every member this node knows of, itself included, with
// their states, sorted by node ID.
func (g *Gossip) Members() []Member { return g.d.snapshot() }

// IsAlive reports whether gossip currently considers nodeID alive.
func (g *Gossip) IsAlive(nodeID string) bool { return g.d.state(nodeID) == MemberAlive }

// NodeID returns this member's node ID.
func (g *Gossip) NodeID() string { return g.cfg.NodeID }

// Addr returns the address other members reach this one at (host:port),
// or "" before Start.
func (g *Gossip) Addr() string {
	ml, err := g.startedMemberlist()
	if err != nil {
		return ""
	}
	return hostPort(ml.LocalNode())
}

// SetMeta replaces the extra metadata published with this node and
// gossips it, waiting (bounded by ctx) until it has been sent.
func (g *Gossip) SetMeta(ctx context.Context, meta map[string]string) error {
	ml, err := g.startedMemberlist()
	if err != nil {
		return fmt.Errorf("set gossip metadata: %w", err)
	}
	m := g.d.localMeta()
	m.Meta = maps.Clone(meta)
	encoded, err := encodeMeta(m)
	if err != nil {
		return fmt.Errorf("set gossip metadata: %w", err)
	}
	g.d.setMeta(m, encoded)
	if err := ml.UpdateNode(g.broadcastTimeout(ctx)); err != nil {
		return fmt.Errorf("set gossip metadata: %w", err)
	}
	return nil
}

// broadcastTimeout turns ctx's deadline into the timeout memberlist's
// blocking broadcasts take (where 0 would mean forever).
func (g *Gossip) broadcastTimeout(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return g.timing.BroadcastTimeout
}

// startedMemberlist returns memberlist if the member is running.
func (g *Gossip) startedMemberlist() (*memberlist.Memberlist, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case stateNew:
		return nil, ErrNotStarted
	case stateClosed:
		return nil, ErrClosed
	}
	return g.ml, nil
}

// goStarted runs f in a goroutine that Shutdown waits for, if running.
func (g *Gossip) goStarted(f func(*memberlist.Memberlist)) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch g.state {
	case stateNew:
		return ErrNotStarted
	case stateClosed:
		return ErrClosed
	}
	ml := g.ml
	g.goLocked(func() { f(ml) })
	return nil
}

// goLocked starts f as a goroutine Shutdown waits for; g.mu must be held
// so that Add never races Shutdown's Wait.
func (g *Gossip) goLocked(f func()) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		f()
	}()
}

// flatten turns memberlist's multi-line multierror into one line.
func flatten(err error) error {
	if err == nil {
		return errors.New("no answer")
	}
	var multi interface{ WrappedErrors() []error }
	if !errors.As(err, &multi) {
		return err
	}
	var msgs []string
	for _, e := range multi.WrappedErrors() {
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}
