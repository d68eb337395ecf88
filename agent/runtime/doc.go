// Package runtime runs containers natively with golang.org/x/sys/unix:
// namespaces, pivot_root into a prepared rootfs, mounts, cgroups v1/v2
// (through package cgroups), capabilities, seccomp filters (compiled by
// package seccomp, loaded by the init), a tiny init of ours as PID 1,
// rotated log files, exec into running containers, stats, and adoption of
// running containers after an agent restart. Per-container state lives
// on a tmpfs, logs on disk (statedir.go); a long-lived runtime keeps an
// init started ahead for the next container (spare.go).
//
// The container init is a small binary of its own (internal/cmd/berth-init
// over package initproc, speaking the contract in package initconf), which
// this package embeds and writes to its data dir; see [Config.InitPath].
// A build without it re-executes the running binary instead, whose main
// must then call initproc.IsInit first thing and, when it reports true,
// initproc.Main, which never returns.
//
// What a container must never get from it: a descriptor of the host (the
// init closes what it inherited and starts every process with fds 0-2
// only, fds.go), a working directory or a mount resolved outside its root
// (paths a container controls are opened inside the root and used by
// descriptor, inroot.go and mountfd.go), the host's cgroup paths (a
// private cgroup namespace) or a pids limit padded for the init's threads
// (only the init's forking thread shares the limited group). It needs
// Linux 5.12 or later (openat2, close_range, mount_setattr).
//
// It takes its own small [Spec] and must not import gRPC, berth/proto or
// the image package: the rootfs arrives as a prepared directory.
package runtime
