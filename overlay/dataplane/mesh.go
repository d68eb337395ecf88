package dataplane

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The routing mesh's loop guard. While the nodes' views of a service
// disagree (A thinks B runs a task, B thinks C does, C thinks A does) a
// connection forwarded by one node could be forwarded again, and again:
// with masquerade at each hop no node can tell a forwarded connection by
// its source, which is just another node's address, as it is for a
// legitimate client running on that node. So a forwarded connection says
// so in its packets: every packet a node forwards for the mesh, in the
// connection's original direction, carries meshDSCP, and a node never
// forwards a new connection that arrives with it. Such a connection goes
// to a task of the node or, with none, to the node itself, which refuses
// it (a TCP reset, an ICMP port unreachable): a loop of any length is cut
// at its second hop. The cost: a forwarded connection's packets lose the
// client's own DSCP between the two nodes.
//
// Why the packet and not the connection's mark, nor a set of node
// addresses: the next node has neither this node's conntrack nor a way to
// tell this node's forwarding from a client on it. Why DSCP: it survives
// masquerade and the underlay's routing (an IP option or a TCP option
// would be stripped or refused by middleboxes), it costs no byte, and the
// checksum is updated in place. A network that rewrites DSCP (some
// clouds bleach it) only loses the guard: a circling connection then
// ends when its TTL, decremented at each hop, runs out.

// meshDSCP marks the packets of a mesh-forwarded connection: 0b101011, a
// codepoint of RFC 2474's pool 2 (xxxx11), "for experimental or local
// use", which no standard per-hop behaviour uses.
const meshDSCP = 0x2b

// meshMark marks a connection this node forwards to another node (in its
// conntrack mark), for postrouting to masquerade it and mark its packets
// with meshDSCP. It is one bit, clear of the bits Docker (0x8000) and
// kube-proxy (0x4000) use.
const meshMark = 0x00100000

// notForwarded matches packets not carrying meshDSCP.
func notForwarded() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 1, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0xfc}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{meshDSCP << 2}},
	}
}

// meshDSCPChain sets meshDSCP. It exists with the publishing chains
// only (publish.go): a node publishing nothing forwards nothing, and the
// chain would cost every packet leaving the node. The check side, that a
// new connection carrying meshDSCP is never forwarded, is in the
// published ports' own rules; a connection's packets lose the mark when
// the chain goes, which no node heeds past its first packet.
const meshDSCPChain = "mesh-dscp"

// addMeshDSCP adds the chain, made if missing, emptied and filled, that
// sets meshDSCP on the packets of forwarded connections, original
// direction (the replies go back to the client unmarked).
func addMeshDSCP(c *nftables.Conn, t *nftables.Table) {
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: meshDSCPChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityMangle, Policy: &accept})
	c.FlushChain(ch)
	exprs := append(hasConnMark(meshMark),
		&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}}, // IP_CT_DIR_ORIGINAL
		// `ip dscp set`: the first two bytes of the header, DSCP in the
		// top six bits of the second, written back with the checksum
		// (at byte 10) updated.
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 2},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 2, Mask: []byte{0xff, 0x03}, Xor: []byte{0, meshDSCP << 2}},
		&expr.Payload{OperationType: expr.PayloadWrite, SourceRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 2,
			CsumType: expr.CsumTypeInet, CsumOffset: 10},
	)
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs})
}
