// Package cgroups is berth's small layer over the Linux cgroup filesystem,
// for cgroup v1 (one hierarchy per controller) and v2 (the unified
// hierarchy). It creates a container's group, writes its limits (memory,
// CPU quota and shares, pids, and on v1 the device allow-list), reads usage
// back, reports OOM kills and removes the group.
//
// It owns only files under the cgroup mount; it must not start processes,
// know about containers' specs or import anything above x/sys.
package cgroups
