package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
)

// Config configures a Server.
type Config struct {
	// Upstreams lists the resolvers that names outside berth's go to, read
	// at each forwarded query (so it may follow a changing file); nil
	// reads /etc/resolv.conf (see ResolvConf).
	Upstreams func() []netip.AddrPort
	// Readers is how many goroutines read each network's UDP socket; zero
	// means GOMAXPROCS (at least 2), so one parses while another waits
	// in the kernel.
	Readers int
	// Log receives the server's logs; nil discards them.
	Log *slog.Logger
}

// Server answers the DNS queries of the containers on the node's overlay
// networks. Its methods are safe to call from several goroutines; queries
// never wait for them.
type Server struct {
	cfg   Config
	log   *slog.Logger
	table atomic.Pointer[table]
	fwd   *forwarder

	mu       sync.Mutex // writers only
	services map[Key]Service
	nets     map[string]*listener
	closed   bool
	wg       sync.WaitGroup // every goroutine the server starts
}

// New returns a Server with no network; SetNetwork opens one.
func New(cfg Config) *Server {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Upstreams == nil {
		cfg.Upstreams = ResolvConf("/etc/resolv.conf", cfg.Log).Upstreams
	}
	if cfg.Readers <= 0 {
		cfg.Readers = max(2, runtime.GOMAXPROCS(0))
	}
	s := &Server{cfg: cfg, log: cfg.Log, services: map[Key]Service{}, nets: map[string]*listener{}}
	s.fwd = newForwarder(cfg.Upstreams, s.isOwn, cfg.Log)
	s.table.Store(emptyTable())
	return s
}

// Update is a batch of changes to the services the server answers about,
// made visible to queries at once.
type Update struct {
	// Full says Set holds every service: the others are dropped.
	Full   bool
	Set    []Service
	Remove []Key
}

// Apply applies u: one new table, swapped in whole. Services of a network
// the server does not serve yet are kept until SetNetwork opens it.
func (s *Server) Apply(u Update) {
	s.mu.Lock()
	defer s.mu.Unlock()
	touched := map[string]bool{}
	if u.Full {
		for k := range s.services {
			touched[k.NetworkID] = true
		}
		clear(s.services)
	}
	for _, k := range u.Remove {
		delete(s.services, k)
		touched[k.NetworkID] = true
	}
	for _, svc := range u.Set {
		s.services[svc.key()] = svc
		touched[svc.NetworkID] = true
	}
	s.rebuildLocked(touched)
}

// rebuildLocked swaps in a table whose zones of the touched networks are
// rebuilt from the services.
func (s *Server) rebuildLocked(touched map[string]bool) {
	zs := map[string]*zone{}
	for id := range touched {
		if l := s.nets[id]; l != nil {
			zs[id] = buildZone(l.net, s.servicesOn(id))
		} else {
			zs[id] = nil
		}
	}
	s.table.Store(s.table.Load().withZones(zs))
}

func (s *Server) servicesOn(netID string) []Service {
	var out []Service
	for k, svc := range s.services {
		if k.NetworkID == netID {
			out = append(out, svc)
		}
	}
	return out
}

// SetNetwork starts answering network n's queries on n.Listen (UDP and
// TCP). Setting a network again with the same address and subnet changes
// nothing; with another, it moves. When another server holds the port for
// TCP on the wildcard address, n is served over UDP alone and the error
// says so (errors.Is ErrUDPOnly).
func (s *Server) SetNetwork(ctx context.Context, n Network) error {
	if !n.Subnet.IsValid() || !n.Listen.Addr().IsValid() {
		return fmt.Errorf("dns: network %s: need a subnet and an address to listen on, have %s and %s", n.ID, n.Subnet, n.Listen)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns: server closed")
	}
	if l := s.nets[n.ID]; l != nil {
		if l.want == n {
			return nil
		}
		s.closeLocked(n.ID)
	}
	l, err := listen(ctx, n)
	if err != nil {
		s.rebuildLocked(map[string]bool{n.ID: true}) // drops a moved network's zone
		return err
	}
	l.want = n
	s.nets[n.ID] = l
	s.rebuildLocked(map[string]bool{n.ID: true})
	l.serve(s)
	s.log.Debug("dns serving network", "network", n.ID, "addr", l.net.Listen)
	if l.tcpErr != nil {
		return fmt.Errorf("dns: network %s: %w: %w", n.ID, ErrUDPOnly, l.tcpErr)
	}
	return nil
}

// ErrUDPOnly says a network is served over UDP alone: its TCP port is
// another server's.
var ErrUDPOnly = errors.New("served over UDP only (the TCP port is taken; answers too big for UDP fail)")

// RemoveNetwork stops answering on network id; its services stay known
// until an Update removes them.
func (s *Server) RemoveNetwork(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(id)
	s.rebuildLocked(map[string]bool{id: true})
}

func (s *Server) closeLocked(id string) {
	if l := s.nets[id]; l != nil {
		delete(s.nets, id)
		l.close()
	}
}

// Addr is where network id is served (its port resolved), if it is.
func (s *Server) Addr(id string) (netip.AddrPort, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.nets[id]; l != nil {
		return l.net.Listen, true
	}
	return netip.AddrPort{}, false
}

// Networks lists the IDs of the networks served.
func (s *Server) Networks() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Sorted(maps.Keys(s.nets))
}

// isOwn says whether a is one of the server's own addresses: forwarding
// there would loop.
func (s *Server) isOwn(a netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.nets {
		if l.net.Listen.Addr() == a.Addr().Unmap() && l.net.Listen.Port() == a.Port() {
			return true
		}
	}
	return false
}

// Close stops serving every network and waits for the server's
// goroutines, forwarded queries included.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	for id := range maps.Clone(s.nets) {
		s.closeLocked(id)
	}
	s.mu.Unlock()
	s.wg.Wait()
}
