package agent

// The userland port proxy of `berth-agent run -p`. Service tasks publish
// their ports in the kernel (overlay/dataplane's nftables chains, see
// lb.go); a one-off container of `run` has no overlay endpoint, only its
// loopback, so its ports are relayed in user space as Docker's
// docker-proxy does: a listener on the host, a socket inside the
// container's network namespace per connection.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// Forwarding limits and timeouts, as Docker's userland proxy has them.
const (
	dialTimeout = 10 * time.Second
	// udpIdle ends a UDP flow that has carried no packet for this long.
	udpIdle = 90 * time.Second
	// udpMaxFlows bounds the UDP clients relayed at once per port; packets
	// of further clients are dropped until a flow ends.
	udpMaxFlows = 1024
	udpBufSize  = 65535
)

// PortForwarder publishes a container's ports on the node the way
// Docker's userland proxy does: it listens on every address of the node
// and, for each TCP connection or UDP client, opens a socket inside the
// container's network namespace to 127.0.0.1:target_port and copies
// between the two. It works without any network plumbing, so containers
// need no more than their loopback device.
//
// ListenPorts binds the ports (before the container starts, so a taken
// port fails the task before anything runs), Serve starts forwarding into
// the container, Close releases everything.
type PortForwarder struct {
	log   *slog.Logger
	tcp   []*tcpPort
	udp   []*udpPort
	ports []*pb.PortConfig // as published: the node's port filled in

	mu      sync.Mutex
	conns   map[io.Closer]struct{} // open forwarded connections and UDP flows
	closed  bool
	serving bool
	cancel  context.CancelFunc
	ns      netns.NsHandle
	wg      sync.WaitGroup
}

type tcpPort struct {
	ln     net.Listener
	target string // 127.0.0.1:port in the container
}

type udpPort struct {
	pc     *net.UDPConn
	target *net.UDPAddr

	mu    sync.Mutex
	flows map[string]*udpFlow // by client address
}

// ListenPorts binds every published port of ports on all addresses of the
// node (TCP and UDP). Published port 0 takes any free port; Ports tells
// which. A port already bound fails with ErrPortInUse naming the port. No
// connection is forwarded until Serve.
func ListenPorts(ctx context.Context, ports []*pb.PortConfig, log *slog.Logger) (*PortForwarder, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &PortForwarder{log: log, conns: map[io.Closer]struct{}{}, ns: netns.None()}
	for i, p := range ports {
		if err := f.listen(ctx, i, p); err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

func (f *PortForwarder) listen(ctx context.Context, i int, p *pb.PortConfig) error {
	if t := p.GetTargetPort(); t == 0 || t > 65535 {
		return fmt.Errorf("ports[%d].target_port: %d is not a port; use 1-65535", i, t)
	}
	if p.GetPublishedPort() > 65535 {
		return fmt.Errorf("ports[%d].published_port: %d is not a port; use 1-65535, or 0 for any free port", i, p.GetPublishedPort())
	}
	lc := net.ListenConfig{}
	if p.GetPublishMode() == pb.PortConfig_PUBLISH_MODE_INGRESS {
		lc.Control = reusePort
	}
	addr := ":" + strconv.Itoa(int(p.GetPublishedPort()))
	target := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.GetTargetPort())))
	pub := proto.Clone(p).(*pb.PortConfig)
	switch p.GetProtocol() {
	case pb.PortConfig_PROTOCOL_UDP:
		pc, err := lc.ListenPacket(ctx, "udp", addr)
		if err != nil {
			return listenError(p, err)
		}
		ua, _ := net.ResolveUDPAddr("udp", target)
		f.udp = append(f.udp, &udpPort{pc: pc.(*net.UDPConn), target: ua, flows: map[string]*udpFlow{}})
		pub.PublishedPort = uint32(pc.LocalAddr().(*net.UDPAddr).Port)
	default:
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return listenError(p, err)
		}
		f.tcp = append(f.tcp, &tcpPort{ln: ln, target: target})
		pub.PublishedPort = uint32(ln.Addr().(*net.TCPAddr).Port)
	}
	f.ports = append(f.ports, pub)
	return nil
}

func reusePort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
	})
	return errors.Join(err, serr)
}

func listenError(p *pb.PortConfig, err error) error {
	port := strconv.Itoa(int(p.GetPublishedPort()))
	if p.GetProtocol() == pb.PortConfig_PROTOCOL_UDP {
		port += "/udp"
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("published port %s is %w: free it, or publish another port (0 picks a free one)", port, ErrPortInUse)
	}
	return fmt.Errorf("publish port %s: %w", port, err)
}

// Ports returns the ports as published, with the node port that was bound
// for a published port of 0.
func (f *PortForwarder) Ports() []*pb.PortConfig {
	out := make([]*pb.PortConfig, len(f.ports))
	for i, p := range f.ports {
		out[i] = proto.Clone(p).(*pb.PortConfig)
	}
	return out
}

// Serve starts forwarding into the network namespace at netnsPath (a
// container's /proc/PID/ns/net). The namespace is held open until Close,
// so a reused PID cannot redirect traffic. Forwarding stops when ctx ends
// or on Close.
func (f *PortForwarder) Serve(ctx context.Context, netnsPath string) error {
	ns, err := netns.GetFromPath(netnsPath)
	if err != nil {
		return fmt.Errorf("publish ports: open network namespace %s: %w", netnsPath, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	f.mu.Lock()
	if f.closed || f.serving {
		f.mu.Unlock()
		cancel()
		ns.Close()
		return errors.New("publish ports: forwarder closed or already serving")
	}
	f.serving, f.cancel, f.ns = true, cancel, ns
	f.mu.Unlock()

	f.wg.Add(1)
	go func() { // ctx ending unblocks every Accept and Read below
		defer f.wg.Done()
		<-ctx.Done()
		f.shut()
	}()
	for _, p := range f.tcp {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.acceptLoop(ctx, p)
		}()
	}
	for _, p := range f.udp {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			f.udpLoop(ctx, p)
		}()
	}
	return nil
}

// Close stops listening, ends every forwarded connection and waits for
// the forwarder's goroutines. It is safe to call more than once.
func (f *PortForwarder) Close() error {
	f.mu.Lock()
	cancel := f.cancel
	f.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	f.shut()
	f.wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ns.IsOpen() {
		f.ns.Close()
		f.ns = netns.None()
	}
	return nil
}

// shut closes the listeners and every open connection.
func (f *PortForwarder) shut() {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return
	}
	f.closed = true
	conns := f.conns
	f.conns = map[io.Closer]struct{}{}
	f.mu.Unlock()
	for _, p := range f.tcp {
		p.ln.Close()
	}
	for _, p := range f.udp {
		p.pc.Close()
	}
	for c := range conns {
		c.Close()
	}
}

// track registers c to be closed by shut; false if shut already ran.
func (f *PortForwarder) track(c io.Closer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *PortForwarder) untrack(c io.Closer) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

func (f *PortForwarder) acceptLoop(ctx context.Context, p *tcpPort) {
	backoff := 5 * time.Millisecond
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: wait, as net/http does.
			f.log.Warn("accept on published port", "addr", p.ln.Addr(), "err", err)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer f.untrack(c)
			f.forwardTCP(ctx, c.(*net.TCPConn), p.target)
		}()
	}
}

// forwardTCP dials target inside the container and copies both ways.
func (f *PortForwarder) forwardTCP(ctx context.Context, client *net.TCPConn, target string) {
	defer client.Close()
	var backend net.Conn
	err := inNetns(f.ns, func() error {
		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		var err error
		backend, err = (&net.Dialer{}).DialContext(dctx, "tcp", target)
		return err
	})
	if err != nil {
		if backend != nil {
			backend.Close()
		}
		f.log.Debug("published port: dial container", "target", target, "client", client.RemoteAddr(), "err", err)
		return
	}
	if !f.track(backend) {
		backend.Close()
		return
	}
	defer f.untrack(backend)
	splice(client, backend.(*net.TCPConn))
}

// splice copies a to b and b to a. Each direction's end is passed on as a
// half-close, so a client that shuts down its sending side still gets the
// answer; an error in either direction ends both.
func splice(a, b *net.TCPConn) {
	var wg sync.WaitGroup
	wg.Add(2)
	pipe := func(dst, src *net.TCPConn) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			a.Close()
			b.Close()
			return
		}
		dst.CloseWrite()
	}
	go pipe(a, b)
	go pipe(b, a)
	wg.Wait()
	a.Close()
	b.Close()
}

// udpFlow relays one UDP client's packets to the container and the
// container's answers back to the client.
type udpFlow struct {
	conn   *net.UDPConn // connected to the target, inside the container
	client net.Addr
}

func (f *PortForwarder) udpLoop(ctx context.Context, p *udpPort) {
	buf := make([]byte, udpBufSize)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			f.log.Warn("read on published port", "addr", p.pc.LocalAddr(), "err", err)
			continue
		}
		fl := f.udpFlowFor(ctx, p, from)
		if fl == nil {
			continue
		}
		fl.conn.SetReadDeadline(time.Now().Add(udpIdle))
		if _, err := fl.conn.Write(buf[:n]); err != nil {
			f.log.Debug("published port: udp to container", "target", p.target, "err", err)
		}
	}
}

// udpFlowFor returns client's flow, opening it (and its reply relay) on
// the client's first packet; nil when the packet is to be dropped.
func (f *PortForwarder) udpFlowFor(ctx context.Context, p *udpPort, client net.Addr) *udpFlow {
	key := client.String()
	p.mu.Lock()
	fl, ok := p.flows[key]
	full := len(p.flows) >= udpMaxFlows
	p.mu.Unlock()
	if ok {
		return fl
	}
	if full {
		f.log.Debug("published port: too many udp clients; dropping", "addr", p.pc.LocalAddr(), "client", key)
		return nil
	}
	var conn *net.UDPConn
	err := inNetns(f.ns, func() error {
		var err error
		conn, err = net.DialUDP("udp", nil, p.target)
		return err
	})
	if err != nil {
		if conn != nil {
			conn.Close()
		}
		f.log.Debug("published port: udp socket in container", "target", p.target, "err", err)
		return nil
	}
	if !f.track(conn) {
		conn.Close()
		return nil
	}
	fl = &udpFlow{conn: conn, client: client}
	p.mu.Lock()
	p.flows[key] = fl
	p.mu.Unlock()
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		f.udpReplies(ctx, p, key, fl)
	}()
	return fl
}

// udpReplies sends the container's answers to the client until the flow
// is idle for udpIdle or the forwarder stops.
func (f *PortForwarder) udpReplies(ctx context.Context, p *udpPort, key string, fl *udpFlow) {
	defer func() {
		p.mu.Lock()
		delete(p.flows, key)
		p.mu.Unlock()
		f.untrack(fl.conn)
		fl.conn.Close()
	}()
	buf := make([]byte, udpBufSize)
	for ctx.Err() == nil {
		n, err := fl.conn.Read(buf)
		if err != nil {
			// Refused (nothing listens yet) is reported on a connected
			// UDP socket; keep the flow, the client may retry.
			if errors.Is(err, syscall.ECONNREFUSED) {
				continue
			}
			return // idle, or closed
		}
		fl.conn.SetReadDeadline(time.Now().Add(udpIdle))
		if _, err := p.pc.WriteTo(buf[:n], fl.client); err != nil && ctx.Err() == nil {
			f.log.Debug("published port: udp to client", "client", fl.client, "err", err)
		}
	}
}
