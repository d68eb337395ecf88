package initproc

import (
	"encoding/binary"
	"fmt"
	goruntime "runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"berth/agent/runtime/initconf"
)

// This file is the init's side of seccomp: it loads a program the agent
// compiled, with raw syscalls.

// installSeccomp loads the filter on the calling thread, which must already have
// no_new_privs. Every process the thread forks inherits it; a nil filter
// (seccomp=unconfined) installs nothing.
//
// The init itself goes on under the filter. Under Docker's profile it may
// fork with clone(2) without namespace flags, as os.StartProcess does;
// clone3(2) gets ENOSYS without CAP_SYS_ADMIN, and Go uses it only for
// SysProcAttr.UseCgroupFD or CLONE_NEWTIME (with no fallback): spawn must
// ask for neither.
func installSeccomp(f *initconf.Seccomp) error {
	if f == nil {
		return nil
	}
	n := len(f.Code) / 8
	if n == 0 || n > 0xffff || len(f.Code)%8 != 0 {
		return fmt.Errorf("seccomp filter: %d bytes is not a program", len(f.Code))
	}
	prog := make([]unix.SockFilter, n)
	for i := range prog {
		b := f.Code[8*i:]
		prog[i] = unix.SockFilter{Code: binary.NativeEndian.Uint16(b), Jt: b[2], Jf: b[3], K: binary.NativeEndian.Uint32(b[4:])}
	}
	fprog := unix.SockFprog{Len: uint16(n), Filter: &prog[0]}
	_, _, errno := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(f.Flags), uintptr(unsafe.Pointer(&fprog)))
	goruntime.KeepAlive(prog)
	if errno != 0 {
		return fmt.Errorf("install seccomp filter: %w", errno)
	}
	return nil
}
