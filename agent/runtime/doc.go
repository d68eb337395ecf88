// Package runtime runs containers natively with golang.org/x/sys/unix:
// namespaces, pivot_root into a prepared rootfs, mounts, cgroups v1/v2
// (through package cgroups), capabilities, seccomp filters (compiled by
// package seccomp, loaded by the init), a tiny init of ours as PID 1,
// rotated log files, exec into running containers, stats, and adoption of
// running containers after an agent restart.
//
// The container init is the agent binary re-executed: a main() that uses
// this package must call [IsInit] first thing and, when it reports true,
// [RunInit], which never returns.
//
// It takes its own small [Spec] and must not import gRPC, berth/proto or
// the image package: the rootfs arrives as a prepared directory.
package runtime
