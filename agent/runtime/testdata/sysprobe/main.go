// sysprobe calls syscalls that Docker's default seccomp profile decides on
// and prints, for each, "name=ok" or "name=ERRNO" (e.g. keyctl=EPERM). The
// runtime's seccomp tests run it inside containers; busybox has no applet
// for keyctl or add_key, and a shell cannot pass clone flags.
package main

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// addrNoRandomize is ADDR_NO_RANDOMIZE of <linux/personality.h>.
const addrNoRandomize = 0x0040000

func main() {
	// Only inside a berth container: on a host, a root run would change
	// the host (its mount table, keyrings).
	if cmd, _ := os.ReadFile("/proc/1/cmdline"); !strings.HasPrefix(string(cmd), "berth-init") {
		fmt.Fprintln(os.Stderr, "sysprobe: run me inside a berth container")
		os.Exit(2)
	}
	var out []string
	report := func(name string, err error) {
		out = append(out, name+"="+result(err))
	}
	_, err := unix.KeyctlInt(unix.KEYCTL_GET_KEYRING_ID, unix.KEY_SPEC_SESSION_KEYRING, 1, 0, 0)
	report("keyctl", err)
	_, err = unix.AddKey("user", "berth-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
	report("add_key", err)
	report("mount", unix.Mount("none", "/probe-mnt", "tmpfs", 0, ""))
	// clone3 with a zero-sized argument: EINVAL from the kernel, ENOSYS
	// from Docker's profile, which makes libcs fall back to clone.
	_, _, e := unix.Syscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&[64]byte{})), 0, 0)
	report("clone3", errnoErr(e))
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	report("socket_vsock", err)
	fd, err = unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err == nil {
		unix.Close(fd)
	}
	report("socket_inet", err)
	// personality: Docker allows querying and PER_LINUX32 only.
	_, _, e = unix.Syscall(unix.SYS_PERSONALITY, 0xffffffff, 0, 0)
	report("personality_query", errnoErr(e))
	_, _, e = unix.Syscall(unix.SYS_PERSONALITY, addrNoRandomize, 0, 0)
	report("personality_norandom", errnoErr(e))
	// clone without namespace flags is allowed, with CLONE_NEWUSER not.
	report("fork", spawn(0))
	report("clone_newuser", spawn(unix.CLONE_NEWUSER))
	otherABIs(report)
	fmt.Println(strings.Join(out, " "))
}

// spawn starts /bin/true with extra clone flags and waits for it.
func spawn(flags uintptr) error {
	pid, err := syscall.ForkExec("/bin/true", []string{"true"}, &syscall.ProcAttr{
		Sys: &syscall.SysProcAttr{Cloneflags: flags},
	})
	if err != nil {
		return err
	}
	var ws syscall.WaitStatus
	_, err = syscall.Wait4(pid, &ws, 0, nil)
	return err
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func result(err error) string {
	if err == nil {
		return "ok"
	}
	if e, ok := err.(syscall.Errno); ok {
		if name := unix.ErrnoName(e); name != "" {
			return name
		}
	}
	fmt.Fprintln(os.Stderr, err)
	return "error"
}
