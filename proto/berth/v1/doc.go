// Package berthv1 is berth's API contract, generated from the .proto files
// beside it: every cluster object (Node, Service, Task, Network, Secret,
// Cluster) and every RPC (Control for the CLI, Dispatcher for agents,
// RaftMembership for managers). Regenerate with `make proto`; never edit the
// .pb.go files by hand. This package imports nothing of berth's.
package berthv1
