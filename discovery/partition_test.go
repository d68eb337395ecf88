package discovery

import (
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"berth/internal/await"

	"github.com/hashicorp/memberlist"
)

// cuttableTransport is memberlist's UDP/TCP transport with a switch that
// drops all traffic to and from the member, as a pulled cable would.
type cuttableTransport struct {
	*memberlist.NetTransport
	cut     atomic.Bool
	packets chan *memberlist.Packet
	streams chan net.Conn
	stop    chan struct{}
	wg      sync.WaitGroup
}

var errCut = errors.New("link cut")

func newCuttableTransport(t testing.TB) *cuttableTransport {
	t.Helper()
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		t.Fatalf("net transport: %v", err)
	}
	c := &cuttableTransport{
		NetTransport: nt,
		packets:      make(chan *memberlist.Packet),
		streams:      make(chan net.Conn),
		stop:         make(chan struct{}),
	}
	c.wg.Add(2)
	go c.forwardPackets()
	go c.forwardStreams()
	return c
}

func (c *cuttableTransport) forwardPackets() {
	defer c.wg.Done()
	for {
		select {
		case p := <-c.NetTransport.PacketCh():
			if c.cut.Load() {
				continue
			}
			select {
			case c.packets <- p:
			case <-c.stop:
				return
			}
		case <-c.stop:
			return
		}
	}
}

func (c *cuttableTransport) forwardStreams() {
	defer c.wg.Done()
	for {
		select {
		case conn := <-c.NetTransport.StreamCh():
			if c.cut.Load() {
				conn.Close()
				continue
			}
			select {
			case c.streams <- conn:
			case <-c.stop:
				conn.Close()
				return
			}
		case <-c.stop:
			return
		}
	}
}

func (c *cuttableTransport) PacketCh() <-chan *memberlist.Packet { return c.packets }
func (c *cuttableTransport) StreamCh() <-chan net.Conn           { return c.streams }

func (c *cuttableTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if c.cut.Load() {
		return time.Now(), nil // sent into the void
	}
	return c.NetTransport.WriteTo(b, addr)
}

func (c *cuttableTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if c.cut.Load() {
		return time.Now(), nil
	}
	return c.NetTransport.WriteToAddress(b, a)
}

func (c *cuttableTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.NetTransport.DialTimeout(addr, timeout)
}

func (c *cuttableTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if c.cut.Load() {
		return nil, errCut
	}
	return c.NetTransport.DialAddressTimeout(a, timeout)
}

func (c *cuttableTransport) Shutdown() error {
	err := c.NetTransport.Shutdown()
	close(c.stop)
	c.wg.Wait()
	return err
}

// fastForget makes memberlist stop gossiping to dead members almost at
// once, so that only the reconnect loop can heal a cut.
func fastForget(cfg *GossipConfig, next func(*memberlist.Config)) {
	cfg.Timing.ReconnectInterval = 200 * time.Millisecond
	cfg.tweak = func(mc *memberlist.Config) {
		mc.GossipToTheDeadTime = 100 * time.Millisecond
		if next != nil {
			next(mc)
		}
	}
}

func TestCutLinkIsDeadAndHealsToAlive(t *testing.T) {
	t.Parallel()
	key := testKey(t)
	ct := newCuttableTransport(t)
	withCut := func(cfg *GossipConfig) {
		fastForget(cfg, func(mc *memberlist.Config) {
			mc.Transport = ct
			mc.BindPort = ct.GetAutoBindPort()
			mc.AdvertisePort = mc.BindPort
		})
	}
	plain := func(cfg *GossipConfig) { fastForget(cfg, nil) }
	ms := []*member{
		startMember(t, "node-0", key, nil, plain),
		startMember(t, "node-1", key, nil, plain),
		startMember(t, "node-2", key, nil, withCut),
	}
	for _, m := range ms[1:] {
		if _, err := m.g.Join(t.Context(), []string{ms[0].g.Addr()}); err != nil {
			t.Fatalf("join: %v", err)
		}
	}
	waitAlive(t, ms, 3)

	ct.cut.Store(true)
	await.True(t, 5*time.Second, func() bool {
		_, a := ms[0].saw("node-2", EventDead)
		_, b := ms[1].saw("node-2", EventDead)
		_, c := ms[2].saw("node-0", EventDead)
		return a && b && c
	}, "both sides of the cut see the other dead")
	// Not synchronisation: the cut must outlast GossipToTheDeadTime, after
	// which memberlist no longer gossips to the dead and only reconnect heals.
	time.Sleep(300 * time.Millisecond)

	ct.cut.Store(false)
	await.True(t, 5*time.Second, func() bool {
		_, a := ms[0].saw("node-2", EventAlive)
		_, b := ms[1].saw("node-2", EventAlive)
		return a && b && ms[2].alive() == 3
	}, "after the cut heals, node-2 and its peers see each other alive")
}
