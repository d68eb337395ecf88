package dns

import (
	"encoding/binary"

	mdns "github.com/miekg/dns"
)

// query is what answering needs of a request. The common request (one
// question, plain labels, at most an EDNS OPT record) is read straight off
// the wire without allocating; anything else goes through miekg/dns.
type query struct {
	id       uint16
	flags    uint16 // the request's RD and CD bits, kept in the answer
	name     []byte // lowercase FQDN (in nameBuf on the fast path)
	qtype    uint16
	qclass   uint16
	question []byte // the question as it came, echoed in the answer
	edns     bool
	udpSize  uint16 // the client's EDNS buffer size
	version  uint8  // the client's EDNS version
	nameBuf  [256]byte
	zones    [scopeSize]*zone // scratch for scope
}

const (
	hdrLen     = 12
	flagQR     = 0x8000
	flagAA     = 0x0400
	flagTC     = 0x0200
	flagRD     = 0x0100
	flagRA     = 0x0080
	flagCD     = 0x0010
	maxUDP     = 1232 // the EDNS buffer size we offer (DNS flag day 2020)
	plainUDP   = 512
	optRRLen   = 11
	maxNameLen = 255
)

// errKind says why a request cannot be answered from the table.
type errKind int

const (
	reqOK      errKind = iota
	reqDrop            // a response, or too short to answer at all
	reqFormErr         // malformed: answer FORMERR
	reqNotImp          // an opcode other than QUERY
)

// parse reads req into q: the fast path first, miekg/dns when it declines.
func (q *query) parse(req []byte) errKind {
	if q.parseFast(req) {
		return reqOK
	}
	return q.parseSlow(req)
}

// parseFast reads the common request without allocating; false means
// "let the slow path decide", never "malformed".
func (q *query) parseFast(req []byte) bool {
	if len(req) < hdrLen+5 {
		return false
	}
	flags := binary.BigEndian.Uint16(req[2:])
	if flags&flagQR != 0 || (flags>>11)&0xf != mdns.OpcodeQuery ||
		binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 ||
		binary.BigEndian.Uint16(req[8:]) != 0 || binary.BigEndian.Uint16(req[10:]) > 1 {
		return false
	}
	off, n, ok := q.readName(req, hdrLen)
	if !ok || off+4 > len(req) {
		return false
	}
	q.id = binary.BigEndian.Uint16(req)
	q.flags = flags & (flagRD | flagCD)
	q.name = q.nameBuf[:n]
	q.qtype = binary.BigEndian.Uint16(req[off:])
	q.qclass = binary.BigEndian.Uint16(req[off+2:])
	q.question = req[hdrLen : off+4]
	q.edns, q.udpSize, q.version = false, 0, 0
	off += 4
	if binary.BigEndian.Uint16(req[10:]) == 0 {
		return off == len(req)
	}
	return q.readOPT(req, off)
}

// readName copies the question's name, lowercased and dotted, into
// q.nameBuf. It declines compression pointers and any byte but letters,
// digits, '-' and '_' (those need presentation escapes).
func (q *query) readName(req []byte, off int) (int, int, bool) {
	n := 0
	for {
		if off >= len(req) {
			return 0, 0, false
		}
		l := int(req[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(req) || n+l+1 > maxNameLen {
			return 0, 0, false
		}
		for _, c := range req[off : off+l] {
			switch {
			case c >= 'A' && c <= 'Z':
				c += 'a' - 'A'
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			default:
				return 0, 0, false
			}
			q.nameBuf[n] = c
			n++
		}
		q.nameBuf[n] = '.'
		n++
		off += l
	}
	if n == 0 {
		q.nameBuf[0] = '.'
		n = 1
	}
	return off, n, true
}

// readOPT reads the EDNS OPT record that ends the request.
func (q *query) readOPT(req []byte, off int) bool {
	if off+optRRLen > len(req) || req[off] != 0 || binary.BigEndian.Uint16(req[off+1:]) != mdns.TypeOPT {
		return false
	}
	rdlen := int(binary.BigEndian.Uint16(req[off+9:]))
	if off+optRRLen+rdlen != len(req) {
		return false
	}
	q.edns = true
	q.udpSize = binary.BigEndian.Uint16(req[off+3:])
	q.version = req[off+6]
	return true
}

// parseSlow reads any request with miekg/dns and says what to answer
// when it cannot be looked up.
func (q *query) parseSlow(req []byte) errKind {
	if len(req) < hdrLen {
		return reqDrop
	}
	q.id = binary.BigEndian.Uint16(req)
	flags := binary.BigEndian.Uint16(req[2:])
	q.flags = flags & (flagRD | flagCD)
	q.question, q.edns = nil, false
	if flags&flagQR != 0 {
		return reqDrop // never answer an answer: no loops, no reflection
	}
	var m mdns.Msg
	if err := m.Unpack(req); err != nil {
		return reqFormErr
	}
	if m.Opcode != mdns.OpcodeQuery {
		return reqNotImp
	}
	if len(m.Question) != 1 {
		return reqFormErr
	}
	qs := m.Question[0]
	packed, err := (&mdns.Msg{Question: m.Question}).Pack()
	if err != nil {
		return reqFormErr
	}
	q.question = packed[hdrLen:]
	q.name, q.qtype, q.qclass = []byte(fqdn(qs.Name)), qs.Qtype, qs.Qclass
	if opt := m.IsEdns0(); opt != nil {
		q.edns, q.udpSize, q.version = true, opt.UDPSize(), opt.Version()
	}
	return reqOK
}
