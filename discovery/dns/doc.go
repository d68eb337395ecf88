// Package dns is the node's DNS server for the containers on berth's
// overlay networks, Swarm's embedded resolver: per network it answers
// SERVICE (the service's virtual IP, or its ready tasks' addresses with
// endpoint mode dnsrr), tasks.SERVICE (every ready task), a task's name
// (SERVICE.SLOT.TASKID, SERVICE.NODEID.TASKID for global services), the
// service's aliases on the network, and reverse (PTR) names of those
// addresses; it forwards every other name to the node's own resolvers.
//
// It is a subpackage of discovery because discovery itself is gossip
// membership: the two share nothing but the job of finding things, and
// DESIGN.md puts both under discovery/.
//
// Each network is served on its own address (the network's gateway on the
// node's bridge), so the server knows which network a query came from
// without trusting anything the query says, and answers only about that
// network (and the other networks of the asking task). The record table
// is an immutable snapshot swapped whole (copy-on-write, one atomic
// pointer): queries take no lock.
//
// The package knows nothing of protobuf or the agent: callers hand it
// Networks and Services in its own types.
package dns
