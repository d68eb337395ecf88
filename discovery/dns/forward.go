package dns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	mdns "github.com/miekg/dns"
)

const (
	// forwardTimeout is how long one upstream gets to answer, about what
	// a stub resolver waits before its next server (glibc: 5 s, musl: 5 s
	// in total): the client gets SERVFAIL rather than silence.
	forwardTimeout = 2 * time.Second
	// maxForwards bounds the forwarded queries in flight.
	maxForwards = 256
)

// forwarder sends the names that are not berth's to the node's resolvers.
type forwarder struct {
	upstreams func() []netip.AddrPort
	own       func(netip.AddrPort) bool
	slots     chan struct{}
	log       *slog.Logger
}

func newForwarder(upstreams func() []netip.AddrPort, own func(netip.AddrPort) bool, log *slog.Logger) *forwarder {
	return &forwarder{upstreams: upstreams, own: own, slots: make(chan struct{}, maxForwards), log: log}
}

func (f *forwarder) acquire() bool {
	select {
	case f.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (f *forwarder) release() { <-f.slots }

// exchange asks the upstreams in turn, under a fresh ID, and returns the
// first answer with the client's ID back, truncated to what the client
// takes over UDP; SERVFAIL when none answers, nil for a request too broken
// to answer.
func (f *forwarder) exchange(req []byte, tcp bool) []byte {
	m := new(mdns.Msg)
	if err := m.Unpack(req); err != nil {
		return nil
	}
	id := m.Id
	c := &mdns.Client{Net: "udp", Timeout: forwardTimeout}
	if tcp {
		c.Net = "tcp"
	}
	var errs []error
	for _, up := range f.upstreams() {
		if f.own(up) {
			continue // it would ask us again
		}
		m.Id = mdns.Id()
		r, _, err := c.Exchange(m, up.String())
		if err != nil || r == nil {
			errs = append(errs, fmt.Errorf("%s: %v", up, err))
			continue
		}
		r.Id = id
		r.Compress, r.RecursionAvailable = true, true // we recursed for the client
		if !tcp {
			r.Truncate(udpSize(m))
		}
		if out, err := r.Pack(); err == nil {
			return out
		}
	}
	if len(m.Question) > 0 {
		f.log.Debug("dns: no upstream answered", "name", m.Question[0].Name, "err", errors.Join(errs...))
	}
	return servfail(req)
}

// udpSize is the largest UDP answer m's client takes.
func udpSize(m *mdns.Msg) int {
	if opt := m.IsEdns0(); opt != nil {
		return int(max(plainUDP, min(opt.UDPSize(), maxUDP)))
	}
	return plainUDP
}

// servfail is the SERVFAIL answer to req, nil if req cannot be read.
func servfail(req []byte) []byte {
	m := new(mdns.Msg)
	if err := m.Unpack(req); err != nil {
		return nil
	}
	r := new(mdns.Msg).SetRcode(m, mdns.RcodeServerFailure)
	r.RecursionAvailable = true
	out, err := r.Pack()
	if err != nil {
		return nil
	}
	return out
}

// Resolv is what berth reads of a resolv.conf.
type Resolv struct {
	Nameservers []netip.AddrPort
	// Search and Options are copied into containers' resolv.conf, as
	// Docker does.
	Search  []string
	Options []string
}

// ParseResolv reads a resolv.conf. Unknown lines are ignored, as libc
// does; nameservers are on port 53 (the format has no port).
func ParseResolv(b []byte) Resolv {
	var r Resolv
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				r.Nameservers = append(r.Nameservers, netip.AddrPortFrom(a, 53))
			}
		case "search", "domain": // the last of them wins, as in libc
			r.Search = f[1:]
		case "options":
			r.Options = append(r.Options, f[1:]...)
		}
	}
	return r
}

// ResolvFile is a resolv.conf read again when it changes (checked at most
// once a second): DHCP and VPN clients rewrite the host's.
type ResolvFile struct {
	path string
	log  *slog.Logger
	now  func() time.Time

	mu      sync.Mutex
	checked time.Time
	mod     time.Time
	size    int64
	conf    Resolv
}

// ResolvConf returns the resolv.conf at path; a missing file has no
// nameservers (forwarded names then fail with SERVFAIL).
func ResolvConf(path string, log *slog.Logger) *ResolvFile {
	return &ResolvFile{path: path, log: log, now: time.Now}
}

// Read returns the file's current contents.
func (r *ResolvFile) Read() Resolv {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if !r.checked.IsZero() && now.Sub(r.checked) < time.Second {
		return r.conf
	}
	r.checked = now
	fi, err := os.Stat(r.path)
	if err != nil {
		r.conf, r.mod, r.size = Resolv{}, time.Time{}, 0
		return r.conf
	}
	if fi.ModTime().Equal(r.mod) && fi.Size() == r.size {
		return r.conf
	}
	b, err := os.ReadFile(r.path)
	if err != nil {
		r.log.Warn("read resolv.conf", "path", r.path, "err", err)
		return r.conf
	}
	r.conf, r.mod, r.size = ParseResolv(b), fi.ModTime(), fi.Size()
	return r.conf
}

// Upstreams returns the file's nameservers.
func (r *ResolvFile) Upstreams() []netip.AddrPort { return r.Read().Nameservers }
