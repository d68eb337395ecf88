#!/bin/busybox sh
# The VM's init: set up a cgroup v2-only host, run every test suite listed
# in /vmtest/suites, and report on the serial console with lines the host
# reads (see report.go):
#   === vmtest booted
#   === vmtest begin NAME
#   === vmtest end NAME rc=N
#   === vmtest error MESSAGE
#   === vmtest done
# then power off.

PATH=/bin:/sbin:/usr/bin:/usr/sbin
export PATH

mark() { printf '\n=== vmtest %s\n' "$*"; }
fail() {
	mark "error $*"
	dmesg | tail -n 40
	mark done
	poweroff -f
	sleep 5
	exit 1
}

if [ "$1" != stage2 ]; then
	mark booted
	# Stage 1, in the initramfs. pivot_root(2), which every container
	# start uses, refuses to move the initramfs (rootfs) away, so copy the
	# system into a tmpfs and make that the root, as a real host's disk is.
	mount -t proc proc /proc
	mount -t tmpfs -o mode=0755 root /newroot || fail "mount tmpfs root"
	for f in /*; do
		case "$f" in /newroot|/proc) ;; *) cp -a "$f" /newroot/ || fail "copy $f" ;; esac
	done
	mkdir -p /newroot/proc
	umount /proc
	exec switch_root /newroot /init stage2
	fail "switch_root"
fi

mkdir -p /proc /sys /dev /tmp /run /root
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs -o mode=0755 tmpfs /run
# cgroup2 alone, with the options systemd mounts it with.
mount -t cgroup2 -o nsdelegate,memory_recursiveprot cgroup2 /sys/fs/cgroup || fail "mount cgroup2"
if grep -q ' cgroup ' /proc/mounts; then fail "a cgroup v1 hierarchy is mounted"; fi
echo "cgroup2 controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"

while read -r ko; do
	insmod "/lib/modules/$ko" || fail "insmod $ko"
done < /vmtest/modules
ip link set lo up || fail "loopback up"
hostname vmtest

set -a
. /vmtest/env
set +a

while read -r name args; do
	[ -n "$name" ] || continue
	mark "begin $name"
	cd "/vmtest/$name" || fail "no suite $name"
	# shellcheck disable=SC2086 # args are flags, one per word
	"./$name.test" $args < /dev/null 2>&1
	rc=$?
	cd /
	mark "end $name rc=$rc"
done < /vmtest/suites

mark done
sync
poweroff -f
