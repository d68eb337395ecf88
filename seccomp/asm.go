package seccomp

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// maxInsns is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const maxInsns = 4096

// label names a place in a program; jumps go to labels, which are resolved
// to offsets when the program is assembled.
type label int

// insn is one instruction in the making: a plain one, a conditional jump
// to two labels, or an unconditional jump to a label.
type insn struct {
	plain  bpf.Instruction
	cond   *bpf.JumpIf // Cond and Val only; offsets come from jt and jf
	jt, jf label
	ja     bool // unconditional jump to jt
}

// asm builds a program with forward jumps to labels. Classic BPF's
// conditional jumps reach at most 255 instructions; assemble routes longer
// ones through a trampoline placed right after the jump, so callers never
// think about distances.
type asm struct {
	insns []insn
	at    []int // label -> index in insns it marks; -1 until set
}

func (a *asm) newLabel() label {
	a.at = append(a.at, -1)
	return label(len(a.at) - 1)
}

// mark places l before the next instruction emitted.
func (a *asm) mark(l label) {
	if a.at[l] != -1 {
		panic(fmt.Sprintf("seccomp: label %d marked twice", l))
	}
	a.at[l] = len(a.insns)
}

// here returns a label marking the next instruction emitted.
func (a *asm) here() label {
	l := a.newLabel()
	a.mark(l)
	return l
}

func (a *asm) emit(i bpf.Instruction) { a.insns = append(a.insns, insn{plain: i}) }

// load reads the 32-bit word at off of struct seccomp_data into A.
func (a *asm) load(off uint32) { a.emit(bpf.LoadAbsolute{Off: off, Size: 4}) }

func (a *asm) and(k uint32) { a.emit(bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: k}) }

func (a *asm) ret(k uint32) { a.emit(bpf.RetConstant{Val: k}) }

// jump tests A against k and goes to jt when the test holds, else to jf.
func (a *asm) jump(test bpf.JumpTest, k uint32, jt, jf label) {
	a.insns = append(a.insns, insn{cond: &bpf.JumpIf{Cond: test, Val: k}, jt: jt, jf: jf})
}

// goTo jumps to l unconditionally.
func (a *asm) goTo(l label) { a.insns = append(a.insns, insn{ja: true, jt: l}) }

// assemble resolves the labels and returns the program.
func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	for l, at := range a.at {
		if at == -1 {
			return nil, fmt.Errorf("seccomp: label %d never marked", l)
		}
		if at >= len(a.insns) {
			return nil, fmt.Errorf("seccomp: label %d marks the end of the program", l)
		}
	}
	far := make([][2]bool, len(a.insns)) // jt, jf go through a trampoline
	pos := a.layout(far)
	for changed := true; changed; {
		changed = false
		for i, in := range a.insns {
			if in.cond == nil {
				continue
			}
			for b, l := range [2]label{in.jt, in.jf} {
				d := pos[a.at[l]] - pos[i] - 1
				if d < 0 {
					return nil, fmt.Errorf("seccomp: backward jump at %d", i)
				}
				if d > 255 && !far[i][b] {
					far[i][b], changed = true, true
				}
			}
		}
		if changed {
			pos = a.layout(far)
		}
	}
	if n := pos[len(a.insns)]; n > maxInsns {
		return nil, fmt.Errorf("the filter needs %d instructions; the kernel takes at most %d: use fewer rules or architectures", n, maxInsns)
	}
	return a.emitAll(far, pos)
}

// layout returns the final position of every instruction (and of the end)
// given which jumps need trampolines.
func (a *asm) layout(far [][2]bool) []int {
	pos := make([]int, len(a.insns)+1)
	p := 0
	for i := range a.insns {
		pos[i] = p
		p++
		for _, f := range far[i] {
			if f {
				p++
			}
		}
	}
	pos[len(a.insns)] = p
	return pos
}

func (a *asm) emitAll(far [][2]bool, pos []int) ([]bpf.RawInstruction, error) {
	var out []bpf.Instruction
	for i, in := range a.insns {
		switch {
		case in.ja:
			out = append(out, bpf.Jump{Skip: uint32(pos[a.at[in.jt]] - pos[i] - 1)})
		case in.cond != nil:
			j := *in.cond
			var tramps []bpf.Instruction
			for b, l := range [2]label{in.jt, in.jf} {
				skip := pos[a.at[l]] - pos[i] - 1
				if far[i][b] {
					skip = len(tramps)
					tramps = append(tramps, a.trampoline(l, pos[i]+1+len(tramps), pos))
				}
				if b == 0 {
					j.SkipTrue = uint8(skip)
				} else {
					j.SkipFalse = uint8(skip)
				}
			}
			out = append(out, j)
			out = append(out, tramps...)
		default:
			out = append(out, in.plain)
		}
	}
	return bpf.Assemble(out)
}

// trampoline is what a far jump to l lands on at position at: a copy of the
// target when it is a return, else a long unconditional jump.
func (a *asm) trampoline(l label, at int, pos []int) bpf.Instruction {
	target := a.insns[a.at[l]]
	if r, ok := target.plain.(bpf.RetConstant); ok {
		return r
	}
	return bpf.Jump{Skip: uint32(pos[a.at[l]] - at - 1)}
}
