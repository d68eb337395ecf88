package dataplane

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Small nftables expressions the rule sets share.

// addrIs compares the IPv4 address at offset (12 source, 16 destination)
// of the network header with a.
func addrIs(offset uint32, a netip.Addr) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
	}
}

// portIs matches a transport protocol and destination port (`meta l4proto
// P th dport N`).
func portIs(proto uint8, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// toLocal matches packets to an address of this node (`fib daddr type
// local`).
func toLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
	}
}

// maps writes the named maps and sets of one batch, and deletes those of
// the table the batch no longer uses. Named ones are updated in place
// (their elements flushed and added again): an anonymous map dies with
// its rule, and freeing it costs the commit an RCU grace period (12-15 ms
// a rewrite here, against well under 1 ms).
type maps struct {
	c    *nftables.Conn
	t    *nftables.Table
	had  []*nftables.Set // the table's sets before the batch
	used map[string]bool
}

// newMaps lists t's sets as they are; fresh says the batch deletes the
// table first, taking them all.
func newMaps(c *nftables.Conn, t *nftables.Table, fresh bool) *maps {
	m := &maps{c: c, t: t, used: map[string]bool{}}
	if !fresh {
		m.had, _ = c.GetSets(t) // none when there is no table yet
	}
	return m
}

// pick puts one of addrs, drawn at random per evaluation, into register
// reg: `numgen random mod N map @name`, the map holding 0 → addrs[0]…
func (m *maps) pick(name string, reg uint32, addrs []netip.Addr) ([]expr.Any, error) {
	set := &nftables.Set{Table: m.t, Name: name, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: nftables.TypeIPAddr, KeyByteOrder: binaryutil.NativeEndian}
	elems := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("backend %s is not IPv4", a)
		}
		elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), Val: a.AsSlice()}
	}
	if err := m.fill(set, elems); err != nil {
		return nil, err
	}
	return []expr.Any{
		&expr.Numgen{Register: reg, Modulus: uint32(len(addrs)), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg, DestRegister: reg, IsDestRegSet: true, SetName: set.Name, SetID: set.ID},
	}, nil
}

// fill makes set if missing and replaces its elements.
func (m *maps) fill(set *nftables.Set, elems []nftables.SetElement) error {
	if m.used[set.Name] {
		return fmt.Errorf("set %s written twice in one batch", set.Name)
	}
	m.used[set.Name] = true
	if err := m.c.AddSet(set, nil); err != nil {
		return fmt.Errorf("set %s: %w", set.Name, err)
	}
	m.c.FlushSet(set)
	if len(elems) == 0 {
		return nil
	}
	if err := m.c.SetAddElements(set, elems); err != nil {
		return fmt.Errorf("set %s: %w", set.Name, err)
	}
	return nil
}

// dropUnused deletes the sets the table had that the batch did not
// write; the batch must have emptied the chains that used them first.
func (m *maps) dropUnused() {
	for _, s := range m.had {
		if !m.used[s.Name] && !s.Anonymous {
			m.c.DelSet(&nftables.Set{Table: m.t, Name: s.Name})
		}
	}
}

// setConnMark ORs bit into the connection's mark (conntrack's, kept for
// every packet of the connection, unlike the packet's own).
func setConnMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Ct{Key: expr.CtKeyMARK, SourceRegister: true, Register: 1},
	}
}

// hasConnMark matches packets whose connection's mark has bit.
func hasConnMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}
