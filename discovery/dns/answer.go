package dns

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"strconv"

	mdns "github.com/miekg/dns"
)

// verdict is what the server does with a query.
type verdict int

const (
	vAnswer   verdict = iota // answer from the table
	vNoData                  // the name is ours, with nothing of that type
	vNXDomain                // a name in our scope that does not exist
	vForward                 // not ours: ask the node's resolvers
	vRefused                 // the asker is not on the network
)

// lookup decides a query from the network of zone z, asked by src, with
// the zones of every network of the asking task in scope (z first). The
// rules, in order:
//   - an asker outside z's subnet is refused: it is not on the network;
//   - a name of a zone in scope answers from the first zone that has it
//     (A/AAAA/ANY for addresses, PTR/ANY for pointers; no data otherwise);
//   - a class other than IN, or a name outside our scope, is forwarded;
//   - our scope is single-label names, tasks.*, and reverse names of
//     addresses inside any network the node serves: those are NXDOMAIN
//     (for another network's address too: not answered, and not sent
//     out), so that a lookup of a service that does not exist, or of an
//     overlay address, never leaves the node.
func lookup(t *table, z *zone, src netip.Addr, q *query) (verdict, *rrset) {
	if !z.net.Subnet.Contains(src.Unmap()) {
		return vRefused, nil
	}
	if q.qclass != mdns.ClassINET {
		return vForward, nil
	}
	for _, zz := range scope(t, z, src.Unmap(), q) {
		if rs := zz.names[string(q.name)]; rs != nil {
			if rs.has(q.qtype) {
				return vAnswer, rs
			}
			return vNoData, nil
		}
	}
	if ours(t, q.name) {
		return vNXDomain, nil
	}
	return vForward, nil
}

// scopeSize bounds the networks one query looks in (a task on more
// networks is answered about its first ones).
const scopeSize = 8

// scope lists in q.zones the zones a query from src on z looks in: z,
// then the other networks of the task that asks.
func scope(t *table, z *zone, src netip.Addr, q *query) []*zone {
	out := append(q.zones[:0], z)
	task, ok := z.tasks[src]
	if !ok {
		return out
	}
	for _, id := range t.others[task] {
		if zz := t.zones[id]; zz != nil && zz != z && len(out) < scopeSize {
			out = append(out, zz)
		}
	}
	return out
}

var (
	tasksPrefix = []byte("tasks.")
	arpa4       = []byte(".in-addr.arpa.")
)

// ours says whether a name that no zone has is in our scope: SRV names
// (_PORT._PROTO.) are, when what follows is.
func ours(t *table, name []byte) bool {
	for range 2 {
		if len(name) > 0 && name[0] == '_' {
			if i := bytes.IndexByte(name, '.'); i >= 0 && i+1 < len(name) {
				name = name[i+1:]
			}
		}
	}
	if bytes.Count(name, []byte{'.'}) == 1 && len(name) > 1 {
		return true
	}
	if bytes.HasPrefix(name, tasksPrefix) {
		return true
	}
	a, ok := reverse4(name)
	if !ok {
		return false
	}
	for _, z := range t.zones {
		if z.net.Subnet.Contains(a) {
			return true
		}
	}
	return false
}

// reverse4 reads a full IPv4 reverse name (d.c.b.a.in-addr.arpa.).
func reverse4(name []byte) (netip.Addr, bool) {
	rest, ok := bytes.CutSuffix(name, arpa4)
	if !ok {
		return netip.Addr{}, false
	}
	parts := bytes.Split(rest, []byte{'.'})
	if len(parts) != 4 {
		return netip.Addr{}, false
	}
	var b [4]byte
	for i, p := range parts {
		n, err := strconv.ParseUint(string(p), 10, 8)
		if err != nil {
			return netip.Addr{}, false
		}
		b[3-i] = byte(n)
	}
	return netip.AddrFrom4(b), true
}

// has says whether the set answers qtype.
func (rs *rrset) has(qtype uint16) bool {
	if rs.srv != nil {
		return len(rs.srv) > 0 && (qtype == mdns.TypeSRV || qtype == mdns.TypeANY)
	}
	if rs.ptr != "" {
		return qtype == mdns.TypePTR || qtype == mdns.TypeANY
	}
	for _, a := range rs.addrs {
		if rs.matches(a, qtype) {
			return true
		}
	}
	return false
}

func (rs *rrset) matches(a netip.Addr, qtype uint16) bool {
	switch qtype {
	case mdns.TypeA:
		return a.Is4()
	case mdns.TypeAAAA:
		return a.Is6() && !a.Is4In6()
	case mdns.TypeANY:
		return true
	}
	return false
}

// encode appends to buf the answer to q: rcode, and rs's records when the
// verdict is vAnswer. limit is the largest message the transport takes;
// answers that do not fit are left out and TC set, so the client asks
// again over TCP.
// aa marks the answer authoritative: it comes from our own table.
func encode(buf []byte, q *query, rcode int, aa bool, rs *rrset, limit int) []byte {
	flags := uint16(flagQR|flagRA) | q.flags | uint16(rcode&0xf)
	if aa {
		flags |= flagAA
	}
	qd := uint16(0)
	if q.question != nil {
		qd = 1
	}
	buf = binary.BigEndian.AppendUint16(buf, q.id)
	buf = binary.BigEndian.AppendUint16(buf, flags)
	buf = binary.BigEndian.AppendUint16(buf, qd)
	buf = append(buf, 0, 0, 0, 0, 0, 0) // counts filled below
	start := len(buf) - hdrLen
	buf = append(buf, q.question...)
	if q.edns {
		limit -= optRRLen
	}
	var an int
	if rs != nil {
		buf, an = appendRecords(buf, start, q.qtype, rs, limit)
		if an < rs.count(q.qtype) {
			binary.BigEndian.PutUint16(buf[start+2:], flags|flagTC)
		}
	}
	binary.BigEndian.PutUint16(buf[start+6:], uint16(an))
	if q.edns {
		buf = appendOPT(buf, q.version)
		binary.BigEndian.PutUint16(buf[start+10:], 1)
	}
	return buf
}

// count is how many records rs answers for qtype.
func (rs *rrset) count(qtype uint16) int {
	if rs.srv != nil {
		return len(rs.srv)
	}
	if rs.ptr != "" {
		return 1
	}
	n := 0
	for _, a := range rs.addrs {
		if rs.matches(a, qtype) {
			n++
		}
	}
	return n
}

// appendRecords appends rs's records for qtype, each named by a pointer to
// the question's name (offset 12), as many as fit under limit.
func appendRecords(buf []byte, start int, qtype uint16, rs *rrset, limit int) ([]byte, int) {
	if rs.srv != nil {
		return appendSRV(buf, start, rs, limit)
	}
	if rs.ptr != "" {
		out, err := appendPTR(buf, rs)
		if err != nil || len(out)-start > limit {
			return buf, 0
		}
		return out, 1
	}
	n, first := len(rs.addrs), 0
	if rs.rotate && n > 1 {
		first = rand.IntN(n)
	}
	an := 0
	for i := range n {
		a := rs.addrs[(first+i)%n]
		if !rs.matches(a, qtype) {
			continue
		}
		size := 12 + a.BitLen()/8
		if len(buf)-start+size > limit {
			break
		}
		typ := mdns.TypeA
		if !a.Is4() {
			typ = mdns.TypeAAAA
		}
		buf = append(buf, 0xc0, hdrLen)
		buf = binary.BigEndian.AppendUint16(buf, typ)
		buf = binary.BigEndian.AppendUint16(buf, mdns.ClassINET)
		buf = binary.BigEndian.AppendUint32(buf, rs.ttl)
		buf = binary.BigEndian.AppendUint16(buf, uint16(a.BitLen()/8))
		buf = append(buf, a.AsSlice()...)
		an++
	}
	return buf, an
}

func appendPTR(buf []byte, rs *rrset) ([]byte, error) {
	var name [maxNameLen + 1]byte
	n, err := mdns.PackDomainName(rs.ptr, name[:], 0, nil, false)
	if err != nil {
		return nil, err
	}
	buf = append(buf, 0xc0, hdrLen)
	buf = binary.BigEndian.AppendUint16(buf, mdns.TypePTR)
	buf = binary.BigEndian.AppendUint16(buf, mdns.ClassINET)
	buf = binary.BigEndian.AppendUint32(buf, rs.ttl)
	buf = binary.BigEndian.AppendUint16(buf, uint16(n))
	return append(buf, name[:n]...), nil
}

// appendSRV appends rs's SRV records, as many as fit under limit; their
// targets are written whole (no compression), as RFC 2782 asks.
func appendSRV(buf []byte, start int, rs *rrset, limit int) ([]byte, int) {
	var name [maxNameLen + 1]byte
	an := 0
	for _, r := range rs.srv {
		n, err := mdns.PackDomainName(r.target, name[:], 0, nil, false)
		if err != nil || len(buf)-start+18+n > limit {
			break
		}
		buf = append(buf, 0xc0, hdrLen)
		buf = binary.BigEndian.AppendUint16(buf, mdns.TypeSRV)
		buf = binary.BigEndian.AppendUint16(buf, mdns.ClassINET)
		buf = binary.BigEndian.AppendUint32(buf, rs.ttl)
		buf = binary.BigEndian.AppendUint16(buf, uint16(6+n))
		buf = append(buf, 0, 0, 0, 0) // priority, weight
		buf = binary.BigEndian.AppendUint16(buf, r.port)
		buf = append(buf, name[:n]...)
		an++
	}
	return buf, an
}

// appendOPT appends our EDNS OPT record; a client speaking an EDNS
// version above 0 gets BADVERS in its extended rcode (RFC 6891 §6.1.3).
func appendOPT(buf []byte, version uint8) []byte {
	var ext uint8
	if version > 0 {
		ext = mdns.RcodeBadVers >> 4
	}
	buf = append(buf, 0)
	buf = binary.BigEndian.AppendUint16(buf, mdns.TypeOPT)
	buf = binary.BigEndian.AppendUint16(buf, maxUDP)
	return append(buf, ext, 0, 0, 0, 0, 0)
}

// udpLimit is the largest UDP answer q's client takes.
func udpLimit(q *query) int {
	if !q.edns || q.udpSize < plainUDP {
		return plainUDP
	}
	return int(min(q.udpSize, maxUDP))
}

// respond appends to buf the answer to req, asked by src on zone z's
// network. forward says the request is not ours: the caller asks the
// node's resolvers. A nil answer and no forward means drop it.
func respond(buf []byte, q *query, t *table, z *zone, src netip.Addr, req []byte, tcp bool) ([]byte, bool) {
	switch q.parse(req) {
	case reqDrop:
		return nil, false
	case reqFormErr:
		return encode(buf, q, mdns.RcodeFormatError, false, nil, plainUDP), false
	case reqNotImp:
		return encode(buf, q, mdns.RcodeNotImplemented, false, nil, plainUDP), false
	}
	limit := udpLimit(q)
	if tcp {
		limit = mdns.MaxMsgSize
	}
	if q.edns && q.version > 0 {
		return encode(buf, q, mdns.RcodeSuccess, false, nil, limit), false // BADVERS, in the OPT record
	}
	v, rs := lookup(t, z, src, q)
	switch v {
	case vAnswer:
		return encode(buf, q, mdns.RcodeSuccess, true, rs, limit), false
	case vNoData:
		return encode(buf, q, mdns.RcodeSuccess, true, nil, limit), false
	case vNXDomain:
		return encode(buf, q, mdns.RcodeNameError, true, nil, limit), false
	case vRefused:
		return encode(buf, q, mdns.RcodeRefused, false, nil, limit), false
	}
	return nil, true
}
