package seccomp

import (
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// walk runs prog for syscall nr of the ABI with all arguments zero, as the
// kernel would, and returns the action, how many instructions ran and
// whether any of them read an argument. The compiler emits loads, ANDs
// and jumps with constants and returns of constants only.
func walk(t *testing.T, prog []bpf.RawInstruction, audit, nr uint32) (ret uint32, steps int, readArgs bool) {
	t.Helper()
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatal("filter does not disassemble")
	}
	var a uint32
	for pc := 0; pc < len(insns); pc++ {
		steps++
		switch in := insns[pc].(type) {
		case bpf.LoadAbsolute:
			switch in.Off {
			case offNr:
				a = nr
			case offArch:
				a = audit
			default:
				a, readArgs = 0, true
			}
		case bpf.ALUOpConstant:
			a &= in.Val
		case bpf.Jump:
			pc += int(in.Skip)
		case bpf.JumpIf:
			var hold bool
			switch in.Cond {
			case bpf.JumpEqual:
				hold = a == in.Val
			case bpf.JumpGreaterThan:
				hold = a > in.Val
			case bpf.JumpGreaterOrEqual:
				hold = a >= in.Val
			case bpf.JumpBitsSet:
				hold = a&in.Val != 0
			case bpf.JumpNotEqual: // the disassembler's reading of a jump with
				hold = a != in.Val // nothing to skip when the test holds
			case bpf.JumpLessThan:
				hold = a < in.Val
			case bpf.JumpLessOrEqual:
				hold = a <= in.Val
			case bpf.JumpBitsNotSet:
				hold = a&in.Val == 0
			default:
				t.Fatalf("unexpected jump %v", in)
			}
			if hold {
				pc += int(in.SkipTrue)
			} else {
				pc += int(in.SkipFalse)
			}
		case bpf.RetConstant:
			return in.Val, steps, readArgs
		default:
			t.Fatalf("unexpected instruction %v", in)
		}
	}
	t.Fatal("filter ran off its end")
	return 0, 0, false
}

// TestSyscallsFoundByBinarySearch: in Docker's profile on the native ABI,
// every syscall number reaches its decision in a few dozen instructions
// (a chain of one test per syscall would take hundreds for the later
// ones), and a syscall allowed whatever its arguments is decided from its
// number alone, which lets the kernel's seccomp action cache skip the
// filter for it.
func TestSyscallsFoundByBinarySearch(t *testing.T) {
	native, _, _ := hostABIs()
	prog, err := Default().Compile(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := Default().resolve(capNames(dockerCaps))
	if err != nil {
		t.Fatal(err)
	}
	cond := map[uint32]bool{}
	for _, r := range lc.Syscalls {
		for _, name := range r.Names {
			if n, ok := native.table[name]; ok && len(r.Args) > 0 {
				cond[uint32(n)] = true
			}
		}
	}
	most, total, n := 0, 0, 0
	for nr := uint32(0); nr < 600; nr++ {
		ret, steps, readArgs := walk(t, prog.Insns, native.audit, nr)
		if ret == unix.SECCOMP_RET_ALLOW && readArgs && !cond[nr] {
			t.Errorf("syscall %d is allowed whatever its arguments but the filter reads them", nr)
		}
		if !cond[nr] {
			most, total, n = max(most, steps), total+steps, n+1
		}
	}
	t.Logf("%d instructions in the filter; syscalls decided by number alone run %.1f on average, %d at most", len(prog.Insns), float64(total)/float64(n), most)
	if most > 30 {
		t.Errorf("a syscall decided by its number alone runs %d instructions, want a binary search's few (≤ 30)", most)
	}
}
