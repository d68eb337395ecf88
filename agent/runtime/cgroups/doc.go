// Package cgroups is berth's small layer over the Linux cgroup filesystem,
// for cgroup v1 (one hierarchy per controller) and v2 (the unified
// hierarchy). It creates a container's group and, inside it, the payload
// subgroup of the container's processes that carries the pids limit (a
// threaded subgroup on v2), writes its limits (memory, CPU quota and
// shares, pids), restricts the devices its processes may use (v1's
// devices cgroup; on v2 an eBPF device program generated and attached by
// github.com/opencontainers/cgroups, runc's own code), reads usage back,
// reports OOM kills and removes the group.
//
// It owns only files under the cgroup mount and the device programs it
// attaches there; it must not start processes, know about containers'
// specs or import anything of berth's.
package cgroups
