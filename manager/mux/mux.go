// Package mux serves a manager's two protocols on one TLS port, told apart
// by ALPN: gRPC ("h2") for the API and "berth-raft" for Raft's own stream
// transport. One port per manager, as swarm's 2377, and one certificate.
//
// The TLS handshake accepts any client certificate (or none) so that gRPC
// can answer a refused caller with a status saying why; the mux verifies
// the certificate against the cluster CA itself once the handshake is
// done. Raft gets only connections verified as a manager's; gRPC gets the
// verified chain in VerifiedChains, empty for an unverified peer, and each
// service decides what such a caller may do (only NodeCA admits one).
package mux

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"berth/ca"
)

// ProtoRaft is the ALPN protocol of Raft connections.
const ProtoRaft = "berth-raft"

// handshakeTimeout bounds a TLS handshake of an accepted connection.
const handshakeTimeout = 10 * time.Second

// Mux accepts TLS connections on one listener and hands them to the gRPC
// server (through GRPCListener) or to Raft (through RaftLayer).
type Mux struct {
	ln    net.Listener
	creds *ca.Credentials
	log   *slog.Logger
	grpc  *chanListener
	raft  *chanListener
	wg    sync.WaitGroup
	// admitRaft, if set, has the last word on a manager's Raft connection.
	admitRaft func(ca.Identity) error
}

// Option configures a Mux.
type Option func(*Mux)

// AdmitRaft has the mux ask admit, once a Raft connection's certificate
// verified as a manager's, whether that manager may still speak Raft (it
// may have been demoted or removed since its certificate was issued); an
// error closes the connection.
func AdmitRaft(admit func(ca.Identity) error) Option {
	return func(m *Mux) { m.admitRaft = admit }
}

// New wraps ln; call Serve to start accepting.
func New(ln net.Listener, creds *ca.Credentials, log *slog.Logger, opts ...Option) *Mux {
	m := &Mux{
		ln: ln, creds: creds, log: log,
		grpc: newChanListener(ln.Addr()),
		raft: newChanListener(ln.Addr()),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// Serve accepts connections until ctx ends or the listener fails, then
// closes both protocol listeners and waits for pending handshakes.
func (m *Mux) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { m.ln.Close() })
	defer stop()
	defer m.grpc.Close()
	defer m.raft.Close()
	defer m.wg.Wait()
	cfg := m.creds.DeferredServerConfig()
	base := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := base(hello)
		if err == nil {
			c.NextProtos = []string{"h2", ProtoRaft}
		}
		return c, err
	}
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("accept on %s: %w", m.ln.Addr(), err)
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(ctx, tls.Server(conn, cfg))
		}()
	}
}

func (m *Mux) route(ctx context.Context, tc *tls.Conn) {
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		m.log.Debug("tls handshake failed", "remote", tc.RemoteAddr(), "err", err)
		tc.Close()
		return
	}
	st := tc.ConnectionState()
	var verr error
	if len(st.PeerCertificates) > 0 {
		// Only chains verified here are ever trusted; TLS verified nothing.
		st.VerifiedChains, verr = m.creds.VerifyClient(st.PeerCertificates)
	}
	switch st.NegotiatedProtocol {
	case ProtoRaft:
		id, ok := managerOf(st)
		if !ok {
			m.log.Warn("refused a raft connection from a non-manager", "remote", tc.RemoteAddr(), "err", verr)
			tc.Close()
			return
		}
		if m.admitRaft != nil {
			if err := m.admitRaft(id); err != nil {
				m.log.Warn("refused a raft connection", "remote", tc.RemoteAddr(), "node", id.NodeID, "err", err)
				tc.Close()
				return
			}
		}
		m.raft.deliver(ctx, tc)
	default:
		if verr != nil {
			m.log.Debug("unverified client certificate", "remote", tc.RemoteAddr(), "err", verr)
		}
		m.grpc.deliver(ctx, &verifiedConn{Conn: tc, state: st})
	}
}

// managerOf returns the identity of a chain the mux verified for a
// manager's certificate, if st holds one.
func managerOf(st tls.ConnectionState) (ca.Identity, bool) {
	if len(st.VerifiedChains) == 0 {
		return ca.Identity{}, false
	}
	id, err := ca.IdentityOf(st.VerifiedChains[0][0])
	return id, err == nil && id.Role == ca.RoleManager
}

// verifiedConn is a handshaken gRPC connection with its TLS state as the
// mux verified it.
type verifiedConn struct {
	*tls.Conn
	state tls.ConnectionState
}

// GRPCListener yields handshaken gRPC connections; serve it with a
// grpc.Server created with grpc.Creds(mux.Handshaken()).
func (m *Mux) GRPCListener() net.Listener { return m.grpc }

// RaftLayer is Raft's stream layer: inbound connections come from the mux,
// outbound ones dial other managers with this manager's certificate.
func (m *Mux) RaftLayer() raft.StreamLayer { return &raftLayer{chanListener: m.raft, creds: m.creds} }

type raftLayer struct {
	*chanListener
	creds *ca.Credentials
}

// Dial opens a Raft connection to another manager over mutual TLS.
func (r *raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	cfg := r.creds.ClientConfig()
	cfg.NextProtos = []string{ProtoRaft}
	d := &net.Dialer{Timeout: timeout}
	conn, err := tls.DialWithDialer(d, "tcp", string(addr), cfg)
	if err != nil {
		return nil, err
	}
	if conn.ConnectionState().NegotiatedProtocol != ProtoRaft {
		conn.Close()
		return nil, fmt.Errorf("raft dial %s: peer does not speak %s", addr, ProtoRaft)
	}
	return conn, nil
}

// chanListener is a net.Listener fed by the mux.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(ctx context.Context, c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	case <-ctx.Done():
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// Handshaken returns gRPC server credentials for connections the mux has
// already taken through TLS: they pass through and report their TLS state,
// so handlers can read the peer's verified identity.
func Handshaken() credentials.TransportCredentials { return handshaken{} }

type handshaken struct{}

func (handshaken) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mux credentials are for servers only")
}

func (handshaken) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	vc, ok := c.(*verifiedConn)
	if !ok {
		return nil, nil, errors.New("connection did not come through the TLS mux")
	}
	return c, credentials.TLSInfo{State: vc.state, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

func (handshaken) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (h handshaken) Clone() credentials.TransportCredentials { return h }

func (handshaken) OverrideServerName(string) error { return nil }

// PeerIdentity is the verified identity of a gRPC caller, if it presented
// a certificate of this cluster.
func PeerIdentity(ctx context.Context) (ca.Identity, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return ca.Identity{}, false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 {
		return ca.Identity{}, false
	}
	id, err := ca.IdentityOf(info.State.VerifiedChains[0][0])
	return id, err == nil
}

// Unverified says why creds refuse the certificate a gRPC caller presented;
// nil when the caller presented none or it verified. Services call it to
// explain a refusal; it never grants anything.
func Unverified(ctx context.Context, creds *ca.Credentials) error {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 || len(info.State.VerifiedChains) > 0 {
		return nil
	}
	if _, err := creds.VerifyClient(info.State.PeerCertificates); err != nil {
		return err
	}
	// The CA changed since the connection was verified.
	return errors.New("the client certificate was not verified when the connection opened: reconnect")
}
