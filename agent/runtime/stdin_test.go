package runtime

import (
	"os"
	"strings"
	"testing"
)

// TestStdinReachesTheProcess: Spec.Stdin is what the user process reads,
// as docker run -i gives it, with and without a terminal; the terminal
// has the size the spec asks for.
func TestStdinReachesTheProcess(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		tty  bool
		want []string
	}{
		{"pipe", false, []string{"got:hello there"}},
		{"tty", true, []string{"33 77", "got:hello there"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, w, err := os.Pipe()
			must(t, err)
			s := e.spec("stdin-"+tc.name, "sh", "-c", `[ -t 0 ] && stty size; read line; echo "got:$line"`)
			s.Stdin, s.TTY, s.Rows, s.Cols = r, tc.tty, 33, 77
			c := e.run(t, s)
			r.Close()
			if _, err := w.WriteString("hello there\n"); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if st := e.wait(t, c); st.Code != 0 {
				t.Fatalf("exit %+v", st)
			}
			out := e.logs(t, s.ID)
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("output %q lacks %q", out, want)
				}
			}
		})
	}
	// Without Stdin the process reads /dev/null: end of input at once.
	if out := e.output(t, e.spec("no-stdin", "sh", "-c", `read line; echo "read=$?"`)); out != "read=1\n" {
		t.Errorf("without Stdin: %q, want read=1", out)
	}
}
