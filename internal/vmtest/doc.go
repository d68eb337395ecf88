// Package vmtest runs berth's tests in a virtual machine whose cgroup
// filesystem is cgroup v2 only, the layout of current Debian, Ubuntu,
// Fedora and RHEL hosts, which the machine running `make test` may not
// have.
//
// It fetches a stock Debian kernel with apt-get (the package file only; the
// host's /boot is never touched), builds an initramfs of busybox, the
// kernel modules berth needs, berth's binaries and `go test -c` binaries,
// boots it in qemu with no network, and reads the tests' results back from
// the serial console. internal/cmd/vmtest wires it up for `make
// test-cgroup2`.
package vmtest
