package runtime

import (
	"strings"

	"github.com/moby/sys/capability"
	"golang.org/x/sys/unix"
)

// DefaultCapabilities is Docker's default set; every other capability is
// dropped from the bounding, permitted, effective, inheritable and ambient
// sets.
var DefaultCapabilities = []capability.Cap{
	capability.CAP_CHOWN, capability.CAP_DAC_OVERRIDE, capability.CAP_FSETID,
	capability.CAP_FOWNER, capability.CAP_MKNOD, capability.CAP_NET_RAW,
	capability.CAP_SETGID, capability.CAP_SETUID, capability.CAP_SETFCAP,
	capability.CAP_SETPCAP, capability.CAP_NET_BIND_SERVICE, capability.CAP_SYS_CHROOT,
	capability.CAP_KILL, capability.CAP_AUDIT_WRITE,
}

// CapMask returns the /proc/PID/status CapEff mask of caps.
func CapMask(caps []capability.Cap) uint64 {
	var m uint64
	for _, c := range caps {
		m |= 1 << uint(c)
	}
	return m
}

// rlimitByName maps "RLIMIT_NOFILE" or "nofile" to its resource number.
func rlimitByName(name string) (int, bool) {
	n := strings.TrimPrefix(strings.ToUpper(name), "RLIMIT_")
	m := map[string]int{
		"AS": unix.RLIMIT_AS, "CORE": unix.RLIMIT_CORE, "CPU": unix.RLIMIT_CPU,
		"DATA": unix.RLIMIT_DATA, "FSIZE": unix.RLIMIT_FSIZE, "LOCKS": unix.RLIMIT_LOCKS,
		"MEMLOCK": unix.RLIMIT_MEMLOCK, "MSGQUEUE": unix.RLIMIT_MSGQUEUE, "NICE": unix.RLIMIT_NICE,
		"NOFILE": unix.RLIMIT_NOFILE, "NPROC": unix.RLIMIT_NPROC, "RSS": unix.RLIMIT_RSS,
		"RTPRIO": unix.RLIMIT_RTPRIO, "RTTIME": unix.RLIMIT_RTTIME, "SIGPENDING": unix.RLIMIT_SIGPENDING,
		"STACK": unix.RLIMIT_STACK,
	}
	r, ok := m[n]
	return r, ok
}
