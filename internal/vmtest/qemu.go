package vmtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"time"
)

// VM is one boot of the test machine.
type VM struct {
	Kernel    *Kernel
	Initramfs string
	Disk      string // a raw image attached as a virtio disk (/dev/vda)
	MemoryMiB int
	CPUs      int
	Console   io.Writer // receives the whole serial console
	Progress  io.Writer // receives a line per suite, and failures in full
	Verbose   bool      // copy the whole console to Progress too
}

// KVM reports whether /dev/kvm can run a stock kernel: it opens, and it
// is hardware virtualization (kvm_intel or kvm_amd), not PVM (kvm_pvm,
// the nested virtualization of cloud VMs without VMX, which runs only PVM
// guest kernels). Without it qemu emulates the CPU (TCG), many times
// slower.
func KVM() bool {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return false
	}
	f.Close()
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			return true
		}
	}
	return false
}

// kvmBootTimeout bounds how long a KVM boot may take to reach the init
// before the run falls back to TCG, in case KVM misjudges a /dev/kvm
// that cannot run this kernel (the boot then hangs with no output).
const kvmBootTimeout = 60 * time.Second

// Run boots the VM, waits for it to power off, and returns what its init
// reported. It uses KVM when it can, TCG otherwise. The VM has no network
// device; the context bounds the run.
func (vm VM) Run(ctx context.Context) (Report, error) {
	if KVM() {
		rep, err := vm.boot(ctx, true)
		if rep.Booted || ctx.Err() != nil {
			return rep, err
		}
		fmt.Fprintf(vm.Progress, "vm: the kernel did not boot under KVM within %s (a /dev/kvm that cannot run a stock kernel?); using TCG, much slower\n", kvmBootTimeout)
	} else {
		fmt.Fprintln(vm.Progress, "vm: no hardware KVM (/dev/kvm with kvm_intel or kvm_amd); using TCG, much slower")
	}
	return vm.boot(ctx, false)
}

// boot runs qemu once. With KVM it gives up when the init has not started
// within kvmBootTimeout.
func (vm VM) boot(ctx context.Context, kvm bool) (Report, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", vm.args(kvm)...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return Report{}, err
	}
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return Report{}, fmt.Errorf("start qemu: %w", err)
	}
	booted := func() {}
	if kvm {
		watchdog := time.AfterFunc(kvmBootTimeout, cancel)
		defer watchdog.Stop()
		booted = func() { watchdog.Stop() }
	}
	r := &reader{progress: vm.Progress, verbose: vm.Verbose, now: time.Now, booted: booted}
	sc := bufio.NewScanner(io.TeeReader(out, vm.Console))
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		r.line(sc.Text())
	}
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return r.report, fmt.Errorf("cgroup v2 VM: %w", ctx.Err())
	}
	if werr != nil {
		return r.report, fmt.Errorf("qemu: %w", werr)
	}
	return r.report, sc.Err()
}

func (vm VM) args(kvm bool) []string {
	accel := []string{"-accel", "tcg", "-cpu", "max"}
	if kvm {
		accel = []string{"-accel", "kvm", "-cpu", "host"}
	}
	args := append([]string{
		"-machine", "q35", "-nodefaults", "-no-user-config", "-no-reboot",
		"-display", "none", "-serial", "stdio",
		"-smp", strconv.Itoa(vm.CPUs), "-m", strconv.Itoa(vm.MemoryMiB),
		"-kernel", vm.Kernel.Vmlinuz(), "-initrd", vm.Initramfs,
		// loglevel=1: kernel messages (an OOM kill's report) would cut
		// through test output; panic=-1 with -no-reboot ends qemu on a panic.
		"-append", "console=ttyS0 loglevel=1 panic=-1 rdinit=/init",
	}, accel...)
	if vm.Disk != "" {
		args = append(args, "-drive", "file="+vm.Disk+",format=raw,if=virtio")
	}
	return args
}
