// Package testhost builds throwaway "hosts" for tests and demos: each host is a
// named network namespace joined by a veth pair to a bridge in the root
// namespace, with its own address in a /24 of 198.18.0.0/15 (the range RFC 2544
// reserves for network tests). It runs processes inside a host (entering only
// the network namespace) and injects faults: kill -9, a cut link, traffic
// dropped between two hosts with nftables.
//
// Every object it makes is named "bth" + a four-hex-digit run id, and the run
// records its owner in /run/berth-testhost/<id>.pid. Close removes the run's
// objects; Create and Sweep first remove the objects of runs whose owner has
// died, so a killed test leaves nothing behind for long. Runs of live
// processes are never touched.
//
// Where the machine's firewall drops bridged traffic (br_netfilter loaded and
// a forward chain with policy drop, as dockerd leaves it), the cluster inserts
// an accept rule for its own bridge, tagged with its run id, and removes it on
// Close.
//
// The package must not route anything out of the machine: hosts get only the
// on-link /24, no default route, no NAT. It is test tooling; production code
// must not import it.
package testhost
