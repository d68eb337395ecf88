package seccomp

import (
	"math"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// sect emits the part of a filter for one ABI; A holds the syscall number
// on entry.
type sect struct {
	a   *asm
	abi *abi
}

// span is a run of syscall numbers from lo up to the next span's lo that
// all end the same way: with ret, or, for a syscall with conditional rules,
// in its block.
type span struct {
	lo   uint32
	ret  uint32
	call *call
}

func section(a *asm, x *abi, rules []specs.LinuxSyscall, dflt uint32) error {
	calls, max, err := collect(x, rules, dflt)
	if err != nil {
		return err
	}
	s := &sect{a: a, abi: x}
	s.tree(spans(calls, max, dflt))
	return nil
}

// spans cuts the number line into runs with one outcome each. Numbers
// above every syscall the profile names fail with ENOSYS when the default
// action refuses calls, so that they look unimplemented.
func spans(calls []*call, max, dflt uint32) []span {
	var out []span
	add := func(sp span) {
		if n := len(out); n > 0 && out[n-1].lo == sp.lo {
			out = out[:n-1] // a later span starting at the same number wins
		}
		if n := len(out); n > 0 && out[n-1].call == nil && sp.call == nil && out[n-1].ret == sp.ret {
			return
		}
		out = append(out, sp)
	}
	add(span{lo: 0, ret: dflt})
	for _, c := range calls {
		if len(c.rules) > 0 {
			add(span{lo: c.nr, call: c})
		} else {
			add(span{lo: c.nr, ret: *c.uncond})
		}
		if c.nr < math.MaxUint32 {
			add(span{lo: c.nr + 1, ret: dflt})
		}
	}
	if denies(dflt) && max > 0 && max < math.MaxUint32 {
		add(span{lo: max + 1, ret: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)})
	}
	return out
}

// denies reports whether a default action refuses a call, so that calls
// unknown to the profile should rather look unimplemented.
func denies(ret uint32) bool {
	act := ret & unix.SECCOMP_RET_ACTION_FULL
	return act != unix.SECCOMP_RET_ALLOW && act != unix.SECCOMP_RET_LOG
}

// tree finds the span of the syscall number in A by binary search on the
// spans' first numbers and ends as that span says. A syscall allowed or
// refused whatever its arguments costs a handful of comparisons of the
// number only, which the kernel's seccomp action cache can also evaluate.
func (s *sect) tree(sps []span) {
	a := s.a
	if len(sps) == 1 {
		if sps[0].call != nil {
			s.block(sps[0].call)
		} else {
			a.ret(sps[0].ret)
		}
		return
	}
	mid := len(sps) / 2
	right := a.newLabel()
	a.jumpOrNext(bpf.JumpGreaterOrEqual, sps[mid].lo, right)
	s.tree(sps[:mid])
	a.mark(right)
	s.tree(sps[mid:])
}

// block tries a syscall's conditional rules in order, then falls back to
// its unconditional rule or the default action.
func (s *sect) block(c *call) {
	a := s.a
	rets := map[uint32]label{}
	var order []uint32
	for _, r := range c.rules {
		if _, ok := rets[r.ret]; !ok {
			rets[r.ret] = a.newLabel()
			order = append(order, r.ret)
		}
		for _, set := range r.any {
			fail := a.newLabel()
			for i, cond := range set {
				pass := rets[r.ret]
				if i < len(set)-1 {
					pass = a.newLabel()
				}
				s.cmp(cond, pass, fail)
				if i < len(set)-1 {
					a.mark(pass)
				}
			}
			a.mark(fail)
		}
	}
	a.ret(c.fallback)
	for _, k := range order {
		a.mark(rets[k])
		a.ret(k)
	}
}

// cmp tests one argument; it goes to pass when the condition holds, else
// to fail. 64-bit arguments are compared high word first; on ABIs with
// 32-bit arguments the high word is zero.
func (s *sect) cmp(c cmp, pass, fail label) {
	a := s.a
	lo, hi := argWords(c.arg)
	vhi, vlo := uint32(c.val>>32), uint32(c.val)
	if c.op == specs.OpMaskedEqual {
		// libseccomp's MASKED_EQ: (arg & value) == valueTwo.
		dhi, dlo := uint32(c.val2>>32), uint32(c.val2)
		if s.abi.arg32 {
			if dhi != 0 {
				a.goTo(fail)
				return
			}
		} else {
			a.load(hi)
			a.and(vhi)
			onLow := a.newLabel()
			a.jump(bpf.JumpEqual, dhi, onLow, fail)
			a.mark(onLow)
		}
		a.load(lo)
		a.and(vlo)
		a.jump(bpf.JumpEqual, dlo, pass, fail)
		return
	}
	onLow := a.newLabel()
	if s.abi.arg32 {
		s.highZero(c.op, vhi, onLow, pass, fail)
	} else {
		s.high(c.op, hi, vhi, onLow, pass, fail)
	}
	a.mark(onLow)
	a.load(lo)
	switch c.op {
	case specs.OpEqualTo:
		a.jump(bpf.JumpEqual, vlo, pass, fail)
	case specs.OpNotEqual:
		a.jump(bpf.JumpEqual, vlo, fail, pass)
	case specs.OpGreaterThan:
		a.jump(bpf.JumpGreaterThan, vlo, pass, fail)
	case specs.OpGreaterEqual:
		a.jump(bpf.JumpGreaterOrEqual, vlo, pass, fail)
	case specs.OpLessThan:
		a.jump(bpf.JumpGreaterOrEqual, vlo, fail, pass)
	case specs.OpLessEqual:
		a.jump(bpf.JumpGreaterThan, vlo, fail, pass)
	}
}

// high compares the argument's high word with vhi: a difference decides
// the condition, equality leaves it to the low words (onLow).
func (s *sect) high(op specs.LinuxSeccompOperator, off, vhi uint32, onLow, pass, fail label) {
	a := s.a
	a.load(off)
	switch op {
	case specs.OpEqualTo:
		a.jump(bpf.JumpEqual, vhi, onLow, fail)
	case specs.OpNotEqual:
		a.jump(bpf.JumpEqual, vhi, onLow, pass)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		a.jumpOrNext(bpf.JumpGreaterThan, vhi, pass)
		a.jump(bpf.JumpEqual, vhi, onLow, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		notLess := a.newLabel()
		a.jump(bpf.JumpGreaterOrEqual, vhi, notLess, pass)
		a.mark(notLess)
		a.jump(bpf.JumpEqual, vhi, onLow, fail)
	}
}

// highZero is high for a high word known to be zero: decided now.
func (s *sect) highZero(op specs.LinuxSeccompOperator, vhi uint32, onLow, pass, fail label) {
	switch {
	case vhi == 0: // the low words decide; onLow comes next
	case op == specs.OpNotEqual || op == specs.OpLessThan || op == specs.OpLessEqual:
		s.a.goTo(pass) // 0 < vhi
	default:
		s.a.goTo(fail)
	}
}
