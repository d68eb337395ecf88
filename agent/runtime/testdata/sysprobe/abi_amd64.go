package main

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// int80 makes an i386 system call from this 64-bit process: the kernel
// reports it to seccomp with AUDIT_ARCH_I386.
func int80(nr, a1, a2, a3 uintptr) uintptr

// Syscall numbers of the i386 and x32 ABIs (arch/x86/entry/syscalls).
const (
	i386Getpid = 20
	i386Keyctl = 288
	x32Bit     = 0x40000000
	x32Getpid  = 39
	x32Keyctl  = 250
)

// otherABIs calls getpid and keyctl through the i386 and x32 ABIs. A
// filter that covers them refuses keyctl (EPERM) and lets getpid through;
// the x32 getpid then gets ENOSYS from kernels built without x32.
func otherABIs(report func(string, error)) {
	i386 := func(nr, a1, a2, a3 uintptr) error {
		if r := int32(int80(nr, a1, a2, a3)); r < 0 && r > -4096 {
			return syscall.Errno(-r)
		}
		return nil
	}
	report("i386_getpid", i386(i386Getpid, 0, 0, 0))
	sessionKeyring := uintptr(0xfffffffd) // KEY_SPEC_SESSION_KEYRING as a 32-bit int
	report("i386_keyctl", i386(i386Keyctl, unix.KEYCTL_GET_KEYRING_ID, sessionKeyring, 1))
	_, _, e := unix.Syscall(x32Bit|x32Getpid, 0, 0, 0)
	report("x32_getpid", errnoErr(e))
	_, _, e = unix.Syscall(x32Bit|x32Keyctl, unix.KEYCTL_GET_KEYRING_ID, ^uintptr(2), 1)
	report("x32_keyctl", errnoErr(e))
}
