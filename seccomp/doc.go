// Package seccomp turns seccomp profiles in Docker's JSON format — Docker's
// default profile (github.com/moby/profiles/seccomp) or a user's — into
// classic BPF programs for seccomp(2), in pure Go. It applies a profile's
// capability, architecture and kernel conditions for the container at
// hand, as Docker does, and covers every ABI the host's CPU runs (x86_64,
// i386 and x32 on amd64; arm64 and arm on arm64).
//
// It also reads Docker's --security-opt entries, of which berth supports
// seccomp=unconfined|builtin|<profile>, and caches compiled programs,
// since every container start needs one.
//
// It compiles only; loading a program is the container init's job, which
// must not import this package (the init stays small). It imports nothing
// of berth.
package seccomp
