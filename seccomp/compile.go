package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Program is a compiled filter, ready for seccomp(SECCOMP_SET_MODE_FILTER).
type Program struct {
	Flags uint32 // SECCOMP_FILTER_FLAG_* to load it with
	Insns []bpf.RawInstruction
}

// Encode returns the instructions as an array of struct sock_filter in the
// host's byte order, 8 bytes each.
func (p *Program) Encode() []byte {
	out := make([]byte, 0, 8*len(p.Insns))
	for _, in := range p.Insns {
		out = binary.NativeEndian.AppendUint16(out, in.Op)
		out = append(out, in.Jt, in.Jf)
		out = binary.NativeEndian.AppendUint32(out, in.K)
	}
	return out
}

// Compile builds the filter for a container whose bounding set holds caps
// ("CAP_SYS_ADMIN" or "sys_admin"): rules a profile includes or excludes by
// capability follow the caps, as in Docker.
//
// The filter checks the architecture first: the host's native ABI and the
// others the profile lists that this CPU runs (i386 and x32 on x86_64, as
// Docker's profile lists them) get a section each; any other ABI kills the
// process, as libseccomp's bad-architecture action does. In a section,
// syscalls numbered above every syscall the profile names fail with ENOSYS
// (as runc does, so that a libc falls back from syscalls newer than the
// profile); the rest are found by binary search on the number. Rules with
// argument conditions are tried in the profile's order, then the syscall's
// unconditional rule, then the default action. Several conditions on one
// argument in one rule match as alternatives (runc's reading of such
// profiles, which Docker's relies on), else the conditions must all hold.
// Syscall names this host's tables do not know are skipped, as in runc.
func (p *Profile) Compile(caps []string) (*Program, error) {
	names := make([]string, len(caps))
	for i, c := range caps {
		names[i] = capName(c)
	}
	lc, err := p.resolve(names)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	if lc == nil {
		return nil, errors.New("seccomp profile: no defaultAction and no syscalls; use seccomp=unconfined to run without a filter")
	}
	flags, err := filterFlags(lc.Flags)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	dflt, err := retValue(lc.DefaultAction, lc.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: defaultAction: %w", err)
	}
	abis, err := abisFor(lc.Architectures)
	if err != nil {
		return nil, err
	}
	a := &asm{}
	if err := build(a, abis, lc.Syscalls, dflt); err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	insns, err := a.assemble()
	if err != nil {
		return nil, fmt.Errorf("seccomp profile: %w", err)
	}
	return &Program{Flags: flags, Insns: insns}, nil
}

// Offsets in struct seccomp_data. Arguments are 64-bit words; the hosts
// hostABIs accepts are little-endian, so the low half comes first.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

func argWords(i uint) (lo, hi uint32) {
	lo = offArgs + 8*uint32(i)
	return lo, lo + 4
}

// build emits the architecture dispatch and a section per ABI.
func build(a *asm, abis []*abi, rules []specs.LinuxSyscall, dflt uint32) error {
	const badArch = unix.SECCOMP_RET_KILL_PROCESS
	var audits []uint32
	byAudit := map[uint32][]*abi{}
	for _, x := range abis {
		if byAudit[x.audit] == nil {
			audits = append(audits, x.audit)
		}
		byAudit[x.audit] = append(byAudit[x.audit], x)
	}
	a.load(offArch)
	entry := map[uint32]label{}
	for _, au := range audits {
		entry[au] = a.newLabel()
		a.jumpOrNext(bpf.JumpEqual, au, entry[au])
	}
	a.ret(badArch)
	for _, au := range audits {
		a.mark(entry[au])
		a.load(offNr)
		group := byAudit[au]
		if au != uint32(abiX86_64.audit) {
			if err := section(a, group[0], rules, dflt); err != nil {
				return err
			}
			continue
		}
		// x86_64 and x32 share an audit architecture; x32 numbers carry
		// __X32_SYSCALL_BIT. Without an x32 section they are a bad ABI.
		x32 := a.newLabel()
		a.jumpOrNext(bpf.JumpBitsSet, x32Bit, x32)
		if err := section(a, group[0], rules, dflt); err != nil {
			return err
		}
		a.mark(x32)
		if len(group) == 1 {
			a.ret(badArch)
			continue
		}
		if err := section(a, group[1], rules, dflt); err != nil {
			return err
		}
	}
	return nil
}

// jumpOrNext jumps to l when the test holds, else goes on.
func (a *asm) jumpOrNext(test bpf.JumpTest, k uint32, l label) {
	next := a.newLabel()
	a.jump(test, k, l, next)
	a.mark(next)
}

// cmp is one argument condition.
type cmp struct {
	arg       uint
	op        specs.LinuxSeccompOperator
	val, val2 uint64
}

// rule is a conditional rule: any of its condition sets, all of whose
// conditions hold, selects ret.
type rule struct {
	ret uint32
	any [][]cmp
}

// call is what a section decides for one syscall number.
type call struct {
	name     string
	nr       uint32
	rules    []rule
	uncond   *uint32
	fallback uint32 // after the rules: uncond, else the default action
}

// collect gathers the rules of one ABI by syscall number, sorted, and the
// highest number the profile names.
func collect(x *abi, rules []specs.LinuxSyscall, dflt uint32) ([]*call, uint32, error) {
	calls := map[uint32]*call{}
	var max uint32
	for _, r := range rules {
		ret, err := retValue(r.Action, r.ErrnoRet)
		if err != nil {
			return nil, 0, err
		}
		sets := condSets(r.Args)
		for _, name := range r.Names {
			n, ok := x.table[name]
			if !ok {
				continue
			}
			nr := uint32(n) | x.mask
			max = maxU32(max, nr)
			if ret == dflt {
				continue // runc drops rules that repeat the default action
			}
			c := calls[nr]
			if c == nil {
				c = &call{name: name, nr: nr}
				calls[nr] = c
			}
			if len(sets) > 0 {
				c.rules = append(c.rules, rule{ret: ret, any: sets})
				continue
			}
			if c.uncond != nil && *c.uncond != ret {
				return nil, 0, fmt.Errorf("syscall %s has two rules without conditions and with different actions: keep one", name)
			}
			c.uncond = &ret
		}
	}
	out := make([]*call, 0, len(calls))
	for _, c := range calls {
		c.fallback = dflt
		if c.uncond != nil {
			c.fallback = *c.uncond
		}
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *call) int { return int(int64(a.nr) - int64(b.nr)) })
	return out, max, nil
}

func maxU32(a, b uint32) uint32 {
	if a > b {
		return a
	}
	return b
}

// condSets reads a rule's conditions: all must hold, unless one argument
// has several, when each is an alternative (runc's behaviour).
func condSets(args []specs.LinuxSeccompArg) [][]cmp {
	if len(args) == 0 {
		return nil
	}
	seen := map[uint]bool{}
	repeated := false
	all := make([]cmp, len(args))
	for i, a := range args {
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
		all[i] = cmp{arg: a.Index, op: a.Op, val: a.Value, val2: a.ValueTwo}
	}
	if !repeated {
		return [][]cmp{all}
	}
	sets := make([][]cmp, len(all))
	for i, c := range all {
		sets[i] = []cmp{c}
	}
	return sets
}
