// Package ipam chooses IPv4 subnets from a cluster pool and addresses
// within a subnet. It is pure: callers keep the state in the store and
// rebuild an IPAM from it (Reserve) after any restart or leader change.
package ipam
