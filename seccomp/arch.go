package seccomp

import (
	"fmt"
	goruntime "runtime"

	"github.com/elastic/go-seccomp-bpf/arch"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// abi is one system call interface a process on this host may use: its
// audit architecture (what the kernel reports in seccomp_data.arch), its
// syscall table and how wide its arguments are.
type abi struct {
	name  specs.Arch
	audit uint32
	// mask is set in every syscall number of the ABI: x32 shares x86_64's
	// audit architecture and sets __X32_SYSCALL_BIT instead.
	mask  uint32
	table map[string]int
	// arg32 ABIs pass 32-bit arguments: only their low words are compared,
	// as libseccomp does.
	arg32 bool
}

const x32Bit = 0x40000000

var (
	abiX86_64  = &abi{name: specs.ArchX86_64, audit: uint32(arch.X86_64.ID), table: arch.X86_64.SyscallNames}
	abiX86     = &abi{name: specs.ArchX86, audit: uint32(arch.I386.ID), table: arch.I386.SyscallNames, arg32: true}
	abiX32     = &abi{name: specs.ArchX32, audit: uint32(arch.X32.ID), mask: x32Bit, table: arch.X32.SyscallNames, arg32: true}
	abiAARCH64 = &abi{name: specs.ArchAARCH64, audit: uint32(arch.AARCH64.ID), table: arch.AARCH64.SyscallNames}
	abiARM     = &abi{name: specs.ArchARM, audit: uint32(arch.ARM.ID), table: arch.ARM.SyscallNames, arg32: true}
)

// hostABIs returns the native ABI of the host (which a filter always
// covers, as libseccomp's does) and the others its CPU can run.
func hostABIs() (native *abi, others []*abi, err error) {
	switch goruntime.GOARCH {
	case "amd64":
		return abiX86_64, []*abi{abiX86, abiX32}, nil
	case "arm64":
		return abiAARCH64, []*abi{abiARM}, nil
	}
	return nil, nil, fmt.Errorf("seccomp filters are not supported on %s hosts; run with seccomp=unconfined", goruntime.GOARCH)
}

// abisFor returns the ABIs a filter for profile arches covers: the native
// one, and those listed that this host can run. Listed ABIs the host cannot
// run need no section: their calls get the bad-architecture action.
func abisFor(arches []specs.Arch) ([]*abi, error) {
	native, others, err := hostABIs()
	if err != nil {
		return nil, err
	}
	out := []*abi{native}
	for _, o := range others {
		for _, a := range arches {
			if a == o.name {
				out = append(out, o)
				break
			}
		}
	}
	return out, nil
}
