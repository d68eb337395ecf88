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

// pickAddr puts one of addrs, drawn at random per evaluation, into
// register reg: `numgen random mod N map { 0 : a0, 1 : a1, … }`, the map
// an anonymous constant one added to c's batch with the rule.
func pickAddr(c *nftables.Conn, t *nftables.Table, reg uint32, addrs []netip.Addr) ([]expr.Any, error) {
	m := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true,
		KeyType: nftables.TypeInteger, DataType: nftables.TypeIPAddr, KeyByteOrder: binaryutil.NativeEndian}
	elems := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		if !a.Is4() {
			return nil, fmt.Errorf("backend %s is not IPv4", a)
		}
		elems[i] = nftables.SetElement{Key: binaryutil.NativeEndian.PutUint32(uint32(i)), Val: a.AsSlice()}
	}
	if err := c.AddSet(m, elems); err != nil {
		return nil, fmt.Errorf("map of backends: %w", err)
	}
	return []expr.Any{
		&expr.Numgen{Register: reg, Modulus: uint32(len(addrs)), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg, DestRegister: reg, IsDestRegSet: true, SetName: m.Name, SetID: m.ID},
	}, nil
}

// notFrom matches packets whose source address is none of addrs (an
// anonymous set).
func notFrom(c *nftables.Conn, t *nftables.Table, addrs []netip.Addr) ([]expr.Any, error) {
	s := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeIPAddr}
	elems := make([]nftables.SetElement, len(addrs))
	for i, a := range addrs {
		elems[i] = nftables.SetElement{Key: a.AsSlice()}
	}
	if err := c.AddSet(s, elems); err != nil {
		return nil, fmt.Errorf("set of nodes: %w", err)
	}
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Lookup{SourceRegister: 1, SetName: s.Name, SetID: s.ID, Invert: true},
	}, nil
}

// setMark ORs bit into the packet's mark.
func setMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^bit), Xor: binaryutil.NativeEndian.PutUint32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
	}
}

// hasMark matches packets whose mark has bit.
func hasMark(bit uint32) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bit), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
	}
}
