package dns

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

const (
	// tcpIdle closes a TCP connection that sends nothing for this long.
	tcpIdle = 10 * time.Second
	// maxTCPConns bounds a network's open TCP connections; more are
	// closed at once (clients fall back on UDP or retry).
	maxTCPConns = 128
)

// listener is one network's sockets.
type listener struct {
	net  Network // Listen with its port resolved
	want Network // as SetNetwork was given it
	udp  *net.UDPConn
	tcp  *net.TCPListener // nil when the port is taken for TCP
	// tcpErr says why there is no TCP listener.
	tcpErr error

	mu     sync.Mutex
	conns  map[*net.TCPConn]struct{}
	closed bool
}

// listen opens n's UDP and TCP sockets on one port (with port 0, the one
// the kernel gives the UDP socket, trying again if TCP has it taken).
//
// A DNS server of the host that listens on the wildcard address (dnsmasq
// does, with SO_REUSEADDR) holds port 53 on every address, our gateways
// included. The UDP socket sets SO_REUSEADDR too, so the kernel hands the
// gateway's queries to it, the more specific one; Linux refuses that for
// TCP whatever the options, so then the network is served over UDP alone
// (answers too big for UDP fail) and the caller is told so.
func listen(ctx context.Context, n Network) (*listener, error) {
	lc := net.ListenConfig{Control: reuseAddr}
	var err error
	for range 5 {
		var pc net.PacketConn
		pc, err = lc.ListenPacket(ctx, "udp", n.Listen.String())
		if err != nil {
			return nil, fmt.Errorf("dns: network %s: listen on udp %s: %w", n.ID, n.Listen, err)
		}
		udp := pc.(*net.UDPConn)
		// A burst of queries (every container of a service starting at
		// once) waits in the socket rather than being dropped; the kernel
		// caps this at net.core.rmem_max.
		udp.SetReadBuffer(1 << 20)
		got := n
		got.Listen = netip.AddrPortFrom(n.Listen.Addr(), udp.LocalAddr().(*net.UDPAddr).AddrPort().Port())
		l := &listener{net: got, udp: udp, conns: map[*net.TCPConn]struct{}{}}
		var ln net.Listener
		ln, err = lc.Listen(ctx, "tcp", got.Listen.String())
		if err == nil {
			l.tcp = ln.(*net.TCPListener)
			return l, nil
		}
		if n.Listen.Port() != 0 && errors.Is(err, unix.EADDRINUSE) {
			l.tcpErr = err
			return l, nil
		}
		udp.Close()
		if n.Listen.Port() != 0 {
			break
		}
	}
	return nil, fmt.Errorf("dns: network %s: listen on tcp %s: %w", n.ID, n.Listen, err)
}

func reuseAddr(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	return errors.Join(err, serr)
}

// serve starts the listener's goroutines, owned by the server's group.
func (l *listener) serve(s *Server) {
	for range s.cfg.Readers {
		s.wg.Go(func() { l.readUDP(s) })
	}
	if l.tcp != nil {
		s.wg.Go(func() { l.acceptTCP(s) })
	}
}

func (l *listener) close() {
	l.mu.Lock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	l.udp.Close()
	if l.tcp != nil {
		l.tcp.Close()
	}
}

// zone is the listener's network in the current table; nil once the
// network is being removed.
func (l *listener) zone(s *Server) (*table, *zone) {
	t := s.table.Load()
	return t, t.zones[l.net.ID]
}

// readUDP answers queries from one reader goroutine, with its own
// buffers: the common query costs no allocation.
func (l *listener) readUDP(s *Server) {
	buf := make([]byte, mdns.MaxMsgSize)
	out := make([]byte, 0, maxUDP)
	var q query
	for {
		n, src, err := l.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		t, z := l.zone(s)
		if z == nil {
			continue
		}
		resp, fwd := respond(out[:0], &q, t, z, src.Addr(), buf[:n], false)
		switch {
		case fwd:
			s.forwardUDP(l, bytes.Clone(buf[:n]), src)
		case resp != nil:
			l.udp.WriteToUDPAddrPort(resp, src)
			if cap(resp) <= 4*maxUDP {
				out = resp[:0]
			}
		}
	}
}

// forwardUDP asks the upstreams on a goroutine of its own; when too many
// are in flight the client gets SERVFAIL at once rather than wait.
func (s *Server) forwardUDP(l *listener, req []byte, src netip.AddrPort) {
	if !s.fwd.acquire() {
		if r := servfail(req); r != nil {
			l.udp.WriteToUDPAddrPort(r, src)
		}
		return
	}
	s.wg.Go(func() {
		defer s.fwd.release()
		if r := s.fwd.exchange(req, false); r != nil {
			l.udp.WriteToUDPAddrPort(r, src)
		}
	})
}

func (l *listener) acceptTCP(s *Server) {
	for {
		c, err := l.tcp.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // out of descriptors: let others finish
			continue
		}
		if !l.track(c) {
			c.Close()
			continue
		}
		s.wg.Go(func() {
			defer l.untrack(c)
			l.serveTCP(s, c)
		})
	}
}

func (l *listener) track(c *net.TCPConn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || len(l.conns) >= maxTCPConns {
		return false
	}
	l.conns[c] = struct{}{}
	return true
}

func (l *listener) untrack(c *net.TCPConn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	c.Close()
}

// serveTCP answers length-prefixed queries on c until it goes idle,
// closes, or sends something that cannot be answered.
func (l *listener) serveTCP(s *Server, c *net.TCPConn) {
	src := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr()
	req := make([]byte, mdns.MaxMsgSize)
	out := make([]byte, 2, 2+maxUDP)
	var q query
	for {
		c.SetDeadline(time.Now().Add(tcpIdle))
		var n [2]byte
		if _, err := io.ReadFull(c, n[:]); err != nil {
			return
		}
		msg := req[:binary.BigEndian.Uint16(n[:])]
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		t, z := l.zone(s)
		if z == nil {
			return
		}
		resp, fwd := respond(out[:2], &q, t, z, src, msg, true)
		if fwd {
			resp = append(out[:2], s.fwd.exchange(msg, true)...)
		}
		if len(resp) <= 2 {
			return
		}
		binary.BigEndian.PutUint16(resp, uint16(len(resp)-2))
		if _, err := c.Write(resp); err != nil {
			return
		}
	}
}
