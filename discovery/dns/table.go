package dns

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
)

// TTLs are small because answers must follow tasks: a client that caches
// an address for its TTL keeps using a dead task that long. Task addresses
// (tasks.SERVICE, dnsrr services, task names) change whenever a task
// starts, turns healthy or dies, so they live one second, the time within
// which berth promises a change shows. A virtual IP lives as long as its
// service, but a removed service's VIP can be given to a new one, so it
// lives five seconds, not minutes. Negative answers carry no SOA and so are
// not cached at all (RFC 2308 §5): a service created a moment ago
// resolves at the next query.
const (
	TaskTTL = 1
	VIPTTL  = 5
)

// Network is an overlay network the server answers on.
type Network struct {
	ID string
	// Subnet is the network's subnet: only its addresses may ask, and
	// reverse names inside it are ours (never forwarded).
	Subnet netip.Prefix
	// Listen is where the network's queries arrive (UDP and TCP): the
	// network's gateway address on the node, port 53. Port 0 picks one
	// (tests).
	Listen netip.AddrPort
}

// Service is one service's names on one network.
type Service struct {
	ID, Name  string
	NetworkID string
	// VIP is the service's virtual IP on the network; invalid (the zero
	// Addr) for endpoint mode dnsrr, where SERVICE answers with the
	// addresses of the ready tasks.
	VIP netip.Addr
	// Aliases are the service's other names on this network
	// (--network name=N,alias=A); each answers as SERVICE does.
	Aliases []string
	// Ports are the service's ports, answered as SRV records.
	Ports []Port
	Tasks []Task
}

// Port is a port of a service, named as Kubernetes names its SRV
// records: _TARGET._PROTO.SERVICE (and _NAME._PROTO.SERVICE for a named
// port) answers with the port tasks listen on, at SERVICE (its VIP) or,
// with endpoint mode dnsrr, at each ready task's name. Swarm has no SRV
// records.
type Port struct {
	// Name is the port's name (--publish name=...), or empty.
	Name string
	// Proto is "tcp" or "udp".
	Proto  string
	Target uint16
}

// Task is one task of a service, on the service's network.
type Task struct {
	ID string
	// Name is the task's DNS name: SERVICE.SLOT.TASKID, or
	// SERVICE.NODEID.TASKID for a global service.
	Name string
	Addr netip.Addr
	// Ready is running and, with a health check, healthy. Only ready
	// tasks are answered; every task may ask.
	Ready bool
}

// Key names a Service in an Update.
type Key struct{ ServiceID, NetworkID string }

func (s Service) key() Key { return Key{s.ID, s.NetworkID} }

// rrset is the answer for one name: addresses (A), a pointer (PTR) or
// services (SRV).
type rrset struct {
	addrs []netip.Addr
	ptr   string // PTR target, FQDN
	srv   []srv
	ttl   uint32
	// rotate spreads clients over task addresses (as Swarm does for
	// dnsrr): each answer starts at another address.
	rotate bool
}

// srv is one SRV record's data: priority and weight are always 0 (one
// target, or equal tasks), so clients pick among them at random.
type srv struct {
	port   uint16
	target string // FQDN
}

// zone is one network's names: immutable once built.
type zone struct {
	net   Network
	names map[string]*rrset // lowercase FQDN → answer
	// tasks maps the address of every task on the network (ready or not)
	// to its task ID, to find the other networks of the task that asks.
	tasks map[netip.Addr]string
}

// table is everything the server answers, swapped whole.
type table struct {
	zones map[string]*zone // by network ID
	// others lists, for a task on several networks, the networks it is
	// on: a query from it is answered from each, in this order.
	others map[string][]string
}

func emptyTable() *table { return &table{zones: map[string]*zone{}, others: map[string][]string{}} }

// fqdn is name lowercased with a trailing dot, as queries are looked up.
func fqdn(name string) string { return mdns.Fqdn(strings.ToLower(name)) }

// buildZone makes network n's zone from the services on it.
func buildZone(n Network, svcs []Service) *zone {
	z := &zone{net: n, names: map[string]*rrset{}, tasks: map[netip.Addr]string{}}
	add := func(name string, ttl uint32, rotate bool, addrs ...netip.Addr) {
		if name == "" || name == "." {
			return
		}
		rs := z.names[name]
		if rs == nil {
			rs = &rrset{ttl: ttl, rotate: rotate}
			z.names[name] = rs
		}
		rs.ttl = min(rs.ttl, ttl)
		rs.rotate = rs.rotate || rotate
		rs.addrs = append(rs.addrs, addrs...)
	}
	ptr := func(a netip.Addr, target string) {
		if a.IsValid() && n.Subnet.Contains(a) {
			z.names[reverse(a)] = &rrset{ptr: target, ttl: TaskTTL}
		}
	}
	for _, s := range svcs {
		var ready []netip.Addr
		for _, t := range s.Tasks {
			if !t.Addr.IsValid() {
				continue
			}
			z.tasks[t.Addr] = t.ID
			if t.Ready {
				ready = append(ready, t.Addr)
				add(fqdn(t.Name), TaskTTL, false, t.Addr)
				ptr(t.Addr, fqdn(t.Name))
			}
		}
		for _, name := range append([]string{s.Name}, s.Aliases...) {
			if s.VIP.IsValid() {
				add(fqdn(name), VIPTTL, false, s.VIP)
			} else {
				add(fqdn(name), TaskTTL, true, ready...)
			}
			add(fqdn("tasks."+name), TaskTTL, true, ready...)
		}
		ptr(s.VIP, fqdn(s.Name))
		addSRV(z, s)
	}
	for _, rs := range z.names {
		slices.SortFunc(rs.addrs, func(a, b netip.Addr) int { return a.Compare(b) })
		rs.addrs = slices.Compact(rs.addrs)
	}
	return z
}

// addSRV adds s's SRV records to z, under every name of s.
func addSRV(z *zone, s Service) {
	for _, name := range append([]string{s.Name}, s.Aliases...) {
		var targets []string
		ttl := uint32(VIPTTL)
		if s.VIP.IsValid() {
			targets = []string{fqdn(name)}
		} else {
			ttl = TaskTTL
			for _, t := range s.Tasks {
				if t.Ready && t.Addr.IsValid() && t.Name != "" {
					targets = append(targets, fqdn(t.Name))
				}
			}
		}
		for _, p := range s.Ports {
			for _, label := range []string{strconv.Itoa(int(p.Target)), p.Name} {
				if label == "" || p.Proto == "" {
					continue
				}
				owner := fqdn("_" + label + "._" + p.Proto + "." + name)
				rs := z.names[owner]
				if rs == nil {
					rs = &rrset{ttl: ttl}
					z.names[owner] = rs
				}
				for _, t := range targets {
					if !slices.Contains(rs.srv, srv{p.Target, t}) {
						rs.srv = append(rs.srv, srv{p.Target, t})
					}
				}
			}
		}
	}
}

// withZones returns a copy of t with the zones of the given networks
// replaced (nil removes one), and the task → networks index rebuilt.
func (t *table) withZones(zs map[string]*zone) *table {
	out := &table{zones: make(map[string]*zone, len(t.zones)+len(zs)), others: map[string][]string{}}
	for id, z := range t.zones {
		out.zones[id] = z
	}
	for id, z := range zs {
		if z == nil {
			delete(out.zones, id)
		} else {
			out.zones[id] = z
		}
	}
	nets := map[string][]string{}
	for id, z := range out.zones {
		for _, task := range z.tasks {
			if !slices.Contains(nets[task], id) {
				nets[task] = append(nets[task], id)
			}
		}
	}
	for task, ids := range nets {
		if len(ids) > 1 {
			slices.Sort(ids)
			out.others[task] = ids
		}
	}
	return out
}

// reverse is a's reverse lookup name (in-addr.arpa. or ip6.arpa.).
func reverse(a netip.Addr) string {
	r, err := mdns.ReverseAddr(a.String())
	if err != nil {
		return ""
	}
	return r
}
