package seccomp

import (
	"encoding/binary"
	"math/rand"
	"slices"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// dockerCaps is Docker's default capability set, which berth containers get.
var dockerCaps = []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}

var allCaps = append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH",
	"CAP_SYS_BOOT", "CAP_SYS_MODULE", "CAP_SYS_PACCT", "CAP_SYS_RAWIO", "CAP_SYS_TIME",
	"CAP_SYS_TTY_CONFIG", "CAP_SYS_NICE", "CAP_SYSLOG", "CAP_BPF", "CAP_PERFMON")

// run evaluates prog on a syscall as the kernel would, with x/net/bpf's
// interpreter (which loads words big-endian: the words are laid out so
// that it reads what the kernel reads on a little-endian host).
func run(t *testing.T, vm *bpf.VM, audit, nr uint32, args [6]uint64) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.BigEndian.PutUint32(data[offNr:], nr)
	binary.BigEndian.PutUint32(data[offArch:], audit)
	for i, v := range args {
		lo, hi := argWords(uint(i))
		binary.BigEndian.PutUint32(data[lo:], uint32(v))
		binary.BigEndian.PutUint32(data[hi:], uint32(v>>32))
	}
	out, err := vm.Run(data)
	if err != nil {
		t.Fatalf("run filter: %v", err)
	}
	return uint32(out)
}

func newVM(t *testing.T, p *Program) *bpf.VM {
	t.Helper()
	insns, ok := bpf.Disassemble(p.Insns)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("filter is not a valid program: %v", err)
	}
	return vm
}

// meaning is the profile's meaning for one ABI, written independently of
// the compiler: what the filter must return for a syscall.
type meaning struct {
	lc    *specs.LinuxSeccomp
	x     *abi
	dflt  uint32
	names map[uint32]string
	max   uint32
}

func newMeaning(lc *specs.LinuxSeccomp, x *abi) *meaning {
	m := &meaning{lc: lc, x: x, names: map[uint32]string{}}
	m.dflt, _ = retValue(lc.DefaultAction, lc.DefaultErrnoRet)
	for name, n := range x.table {
		m.names[uint32(n)|x.mask] = name
	}
	for _, r := range lc.Syscalls {
		for _, name := range r.Names {
			if n, ok := x.table[name]; ok && uint32(n)|x.mask > m.max {
				m.max = uint32(n) | x.mask
			}
		}
	}
	return m
}

func (m *meaning) expect(nr uint32, args [6]uint64) uint32 {
	if denies(m.dflt) && nr > m.max {
		return unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
	}
	name, ok := m.names[nr]
	if !ok {
		return m.dflt
	}
	for _, conditional := range []bool{true, false} {
		for _, r := range m.lc.Syscalls {
			ret, _ := retValue(r.Action, r.ErrnoRet)
			if ret == m.dflt || (len(r.Args) > 0) != conditional || !slices.Contains(r.Names, name) {
				continue
			}
			if !conditional || argsMatch(r.Args, args, m.x.arg32) {
				return ret
			}
		}
	}
	return m.dflt
}

func argsMatch(conds []specs.LinuxSeccompArg, args [6]uint64, arg32 bool) bool {
	seen := map[uint]bool{}
	repeated := false
	for _, c := range conds {
		repeated = repeated || seen[c.Index]
		seen[c.Index] = true
	}
	for _, c := range conds {
		a := args[c.Index]
		if arg32 {
			a = uint64(uint32(a))
		}
		var ok bool
		switch c.Op {
		case specs.OpEqualTo:
			ok = a == c.Value
		case specs.OpNotEqual:
			ok = a != c.Value
		case specs.OpLessThan:
			ok = a < c.Value
		case specs.OpLessEqual:
			ok = a <= c.Value
		case specs.OpGreaterThan:
			ok = a > c.Value
		case specs.OpGreaterEqual:
			ok = a >= c.Value
		case specs.OpMaskedEqual:
			ok = a&c.Value == c.ValueTwo
		}
		if repeated && ok {
			return true // alternatives
		}
		if !repeated && !ok {
			return false
		}
	}
	return !repeated
}

// argValues are arguments around every value the profile compares with,
// in both words, plus random ones.
func argValues(lc *specs.LinuxSeccomp, rng *rand.Rand) []uint64 {
	vals := []uint64{0, 1, 0xffffffff, 1 << 32, ^uint64(0)}
	for _, r := range lc.Syscalls {
		for _, c := range r.Args {
			for _, v := range []uint64{c.Value, c.ValueTwo, c.Value | c.ValueTwo, c.Value &^ 1} {
				vals = append(vals, v, v-1, v+1, v|1<<40, v^0xff, uint64(uint32(v)))
			}
		}
	}
	for range 20 {
		vals = append(vals, rng.Uint64(), uint64(rng.Uint32()))
	}
	return vals
}

// checkAgainstProfile runs every syscall number of every ABI the filter
// covers, with many arguments, and compares with expect.
func checkAgainstProfile(t *testing.T, p *Profile, caps []string) {
	t.Helper()
	prog, err := p.Compile(caps)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := p.resolve(capNames(caps))
	if err != nil {
		t.Fatal(err)
	}
	abis, err := abisFor(lc.Architectures)
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, prog)
	rng := rand.New(rand.NewSource(1))
	vals := argValues(lc, rng)
	for _, x := range abis {
		m := newMeaning(lc, x)
		for n := uint32(0); n < 600; n++ {
			nr := n | x.mask
			for i := range 24 {
				var args [6]uint64
				for j := range args {
					args[j] = vals[(i*7+j*13+int(n))%len(vals)]
				}
				if i == 0 {
					args = [6]uint64{}
				}
				got, want := run(t, vm, x.audit, nr, args), m.expect(nr, args)
				if got != want {
					t.Fatalf("%s syscall %d (%#x) args %#x: filter returns %#x, profile says %#x", x.name, n, nr, args, got, want)
				}
			}
		}
	}
}

func capNames(caps []string) []string {
	out := make([]string, len(caps))
	for i, c := range caps {
		out[i] = capName(c)
	}
	return out
}

func TestDefaultProfileMatchesItsRules(t *testing.T) {
	for _, caps := range [][]string{dockerCaps, allCaps, nil} {
		checkAgainstProfile(t, Default(), caps)
	}
}

func TestCustomProfileMatchesItsRules(t *testing.T) {
	p, err := Parse([]byte(`{
	  "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
	  "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
	  "syscalls": [
	    {"names": ["read", "write", "exit", "exit_group"], "action": "SCMP_ACT_ALLOW"},
	    {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
	    {"names": ["mkdirat"], "action": "SCMP_ACT_KILL_PROCESS"},
	    {"names": ["openat"], "action": "SCMP_ACT_ALLOW",
	     "args": [{"index": 2, "value": 64, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"},
	              {"index": 1, "value": 4294967296, "op": "SCMP_CMP_LT"}]},
	    {"names": ["openat"], "action": "SCMP_ACT_TRAP"},
	    {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
	     "args": [{"index": 0, "value": 2, "op": "SCMP_CMP_EQ"}, {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"}]},
	    {"names": ["lseek"], "action": "SCMP_ACT_LOG", "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_LE"}]},
	    {"names": ["lseek"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 1, "value": 8589934593, "op": "SCMP_CMP_GE"}]},
	    {"names": ["pread64"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 3, "value": 4294967297, "op": "SCMP_CMP_GT"}]},
	    {"names": ["pwrite64"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 5, "value": 7, "op": "SCMP_CMP_NE"}]},
	    {"names": ["fcntl"], "action": "SCMP_ACT_ALLOW",
	     "args": [{"index": 1, "value": 12884901888, "valueTwo": 4294967296, "op": "SCMP_CMP_MASKED_EQ"}]},
	    {"names": ["no_such_syscall"], "action": "SCMP_ACT_ALLOW"}
	  ]}`))
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstProfile(t, p, nil)
}

func TestBadArchitectureKills(t *testing.T) {
	prog, err := Default().Compile(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, prog)
	if got := run(t, vm, 0x1234, 0, [6]uint64{}); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Fatalf("unknown architecture: %#x, want kill", got)
	}
	// A profile listing only x86_64 has no x32 section: x32 numbers on
	// x86_64's audit architecture are a bad ABI too.
	p, err := Parse([]byte(`{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if prog, err = p.Compile(nil); err != nil {
		t.Fatal(err)
	}
	native, _, _ := hostABIs()
	if native != abiX86_64 {
		t.Skip("x32 exists on x86_64 only")
	}
	vm = newVM(t, prog)
	if got := run(t, vm, native.audit, x32Bit|1, [6]uint64{}); got != unix.SECCOMP_RET_KILL_PROCESS {
		t.Fatalf("x32 call without an x32 section: %#x, want kill", got)
	}
	if got := run(t, vm, native.audit, 1, [6]uint64{}); got != unix.SECCOMP_RET_ALLOW {
		t.Fatalf("x86_64 call: %#x, want allow", got)
	}
}

// TestDefaultProfileDecisions spells out what Docker's profile means for a
// few calls that matter, independently of the reference evaluator.
func TestDefaultProfileDecisions(t *testing.T) {
	native, _, _ := hostABIs()
	prog, err := Default().Compile(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	vm := newVM(t, prog)
	eperm := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM))
	enosys := uint32(unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS))
	allow := uint32(unix.SECCOMP_RET_ALLOW)
	nr := func(name string) uint32 { return uint32(native.table[name]) }
	for _, c := range []struct {
		call string
		args [6]uint64
		want uint32
	}{
		{"read", [6]uint64{}, allow},
		{"unshare", [6]uint64{unix.CLONE_NEWUSER}, eperm},
		{"keyctl", [6]uint64{}, eperm},
		{"add_key", [6]uint64{}, eperm},
		{"mount", [6]uint64{}, eperm},
		{"clone3", [6]uint64{}, enosys},
		{"clone", [6]uint64{uint64(unix.SIGCHLD)}, allow},
		{"clone", [6]uint64{unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, eperm},
		{"clone", [6]uint64{unix.CLONE_NEWNET}, eperm},
		{"personality", [6]uint64{0xffffffff}, allow},
		{"personality", [6]uint64{8}, allow},
		{"personality", [6]uint64{0x0040000}, eperm},
		{"socket", [6]uint64{unix.AF_INET}, allow},
		{"socket", [6]uint64{unix.AF_UNIX}, allow},
		{"socket", [6]uint64{unix.AF_VSOCK}, eperm},
		{"socket", [6]uint64{unix.AF_ALG}, eperm},
	} {
		if got := run(t, vm, native.audit, nr(c.call), c.args); got != c.want {
			t.Errorf("%s(%#x): %#x, want %#x", c.call, c.args[0], got, c.want)
		}
	}
	if got := run(t, vm, native.audit, 5000, [6]uint64{}); got != enosys {
		t.Errorf("syscall 5000, newer than the profile: %#x, want ENOSYS", got)
	}
	admin, err := Default().Compile(append(slices.Clone(dockerCaps), "CAP_SYS_ADMIN"))
	if err != nil {
		t.Fatal(err)
	}
	vm = newVM(t, admin)
	for _, call := range []string{"mount", "unshare", "clone3"} {
		if got := run(t, vm, native.audit, nr(call), [6]uint64{unix.CLONE_NEWUSER}); got != allow {
			t.Errorf("with CAP_SYS_ADMIN, %s: %#x, want allow", call, got)
		}
	}
}

// BenchmarkCompileDefault is the cost of a cache miss: Docker's profile
// resolved and compiled for Docker's capabilities.
func BenchmarkCompileDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Default().Compile(dockerCaps); err != nil {
			b.Fatal(err)
		}
	}
}
