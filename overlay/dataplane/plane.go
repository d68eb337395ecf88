package dataplane

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VXLANPort is the IANA VXLAN port the devices send and listen on.
const VXLANPort = 4789

// vxlanOverhead is what VXLAN encapsulation adds to a frame over IPv4:
// outer IP (20), UDP (8), VXLAN (8) and the inner Ethernet header (14).
const vxlanOverhead = 50

// DefaultPrefix starts the name of every link the package makes; it must
// not start a name anything else uses ("bth" is the test hosts').
const DefaultPrefix = "bov"

// Config configures a Plane.
type Config struct {
	// NetNSPath is the network namespace to build in (a test host's);
	// empty means the agent's own.
	NetNSPath string
	// Underlay is the node's address other nodes reach it on: the source
	// of its VXLAN packets and the destination of theirs.
	Underlay netip.Addr
	// Prefix starts every link name (at most 4 characters);
	// DefaultPrefix when empty.
	Prefix string
	// Log receives debug logs; discarded when nil.
	Log *slog.Logger
}

// Plane is one node's overlay data plane. Its methods are safe for
// concurrent use.
type Plane struct {
	h        *netlink.Handle
	ns       *netns.NsHandle // nil: the process's own namespace
	underlay netip.Addr
	uplink   netlink.Link
	mtu      int
	prefix   string
	log      *slog.Logger

	mu   sync.Mutex
	nets map[string]*network // by network ID
	pubs []Published         // by service ID
	hop  bool                // the loopback hop is built (hop.go)
	host *nftables.Conn      // kept open (closing costs ~10 ms); made on first use
	// isolating says the table has the isolation chain (gateway.go).
	isolating bool
	// localnet names the devices of ours that may have route_localnet,
	// true once 1 is written; guarded says the table has the chain that
	// guards them (localnet.go).
	localnet map[string]bool
	guarded  bool
	// publishing says the table has the chains publishing ports.
	publishing bool

	vmu sync.Mutex
	vns map[string]*nsConn // sockets in containers' namespaces, by path
}

// network is a network built on this node.
type network struct {
	Network
	bridge, vxlan netlink.Link
	peers         map[netip.Addr]Peer
}

// New finds the underlay link (the one holding cfg.Underlay) and returns a
// Plane; nothing is built until SetNetwork.
func New(cfg Config) (*Plane, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if len(cfg.Prefix) > 4 {
		return nil, fmt.Errorf("dataplane: prefix %q is longer than 4 characters; link names have 15", cfg.Prefix)
	}
	if !cfg.Underlay.Is4() {
		return nil, fmt.Errorf("dataplane: underlay address %s is not IPv4; give the node's advertise address", cfg.Underlay)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	p := &Plane{h: &netlink.Handle{}, underlay: cfg.Underlay, prefix: cfg.Prefix, log: cfg.Log, nets: map[string]*network{}, vns: map[string]*nsConn{},
		localnet: map[string]bool{}}
	if cfg.NetNSPath != "" {
		ns, err := netns.GetFromPath(cfg.NetNSPath)
		if err != nil {
			return nil, fmt.Errorf("dataplane: open %s: %w", cfg.NetNSPath, err)
		}
		if p.h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE); err != nil {
			ns.Close()
			return nil, fmt.Errorf("dataplane: netlink in %s: %w", cfg.NetNSPath, err)
		}
		p.ns = &ns
	}
	up, err := linkWithAddr(p.h, cfg.Underlay)
	if err != nil {
		p.Close()
		return nil, err
	}
	p.uplink, p.mtu = up, up.Attrs().MTU-vxlanOverhead
	return p, nil
}

// Close releases the Plane's sockets; what it built stays.
func (p *Plane) Close() {
	p.h.Close()
	p.mu.Lock()
	if p.host != nil {
		p.host.CloseLasting()
		p.host = nil
	}
	p.mu.Unlock()
	p.vmu.Lock()
	for path := range p.vns {
		p.releaseLocked(path)
	}
	p.vmu.Unlock()
	if p.ns != nil {
		p.ns.Close()
	}
}

// MTU is the MTU of every overlay link: the underlay's less VXLAN's 50 bytes.
func (p *Plane) MTU() int { return p.mtu }

// linkWithAddr finds the link that holds addr.
func linkWithAddr(h *netlink.Handle, addr netip.Addr) (netlink.Link, error) {
	addrs, err := h.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("dataplane: list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			return h.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("dataplane: no link holds the underlay address %s; give an address of this node", addr)
}

// Sweep deletes every link named with the prefix but those of the
// networks and endpoints to keep (a restarted agent keeps what its
// running containers use): what a previous run of the agent, or a crashed
// test, left behind. Deleting a veth's node end removes its container end.
// Networks built by this Plane but not kept are forgotten, route_localnet
// is cleared on those kept (publishing ports turns it on again), and the
// nftables table is made anew, whatever an earlier agent left in it.
func (p *Plane) Sweep(nets []Network, eps []Endpoint) error {
	keep := map[string]bool{}
	keepNet := map[string]bool{}
	for _, n := range nets {
		keep[p.bridgeName(n.VNI)], keep[p.vxlanName(n.VNI)], keepNet[n.ID] = true, true, true
	}
	for _, ep := range eps {
		keep[p.hostName(ep)] = true
	}
	links, err := p.h.LinkList()
	if err != nil {
		return fmt.Errorf("dataplane: list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		if name := l.Attrs().Name; strings.HasPrefix(name, p.prefix) && !keep[name] {
			if err := p.h.LinkDel(l); err != nil && !isNotFound(err) {
				errs = append(errs, fmt.Errorf("delete %s: %w", l.Attrs().Name, err))
			}
		}
	}
	p.mu.Lock()
	if err := p.removeHop(); err != nil {
		errs = append(errs, err)
	}
	// An earlier agent may have left route_localnet on the bridges kept:
	// cleared while its table, and so its guard, still stands.
	for _, n := range nets {
		p.localnet[p.bridgeName(n.VNI)] = true
	}
	if err := p.closeLocalnet(); err != nil {
		errs = append(errs, err)
	}
	for id := range p.nets {
		if !keepNet[id] {
			delete(p.nets, id)
		}
	}
	if err := p.ruleSet(true); err != nil {
		errs = append(errs, err)
	}
	p.mu.Unlock()
	return errors.Join(errs...)
}

// name builds a link name: prefix, a kind letter, and a suffix.
func (p *Plane) name(kind byte, suffix string) string {
	return p.prefix + string(kind) + suffix
}

// hashName is a short stable suffix for a name too long for a link.
func hashName(parts ...string) string {
	h := fnv.New32a()
	for _, s := range parts {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return fmt.Sprintf("%08x", h.Sum32())
}

// MAC is the hardware address of the endpoint with IPv4 address a, as
// Docker derives it (02:42 then the address), so every node computes a
// remote task's MAC from its address alone.
func MAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, errNoDevice)
}
