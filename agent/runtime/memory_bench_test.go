package runtime

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// BenchmarkInitMemory starts 10 `sleep` containers side by side and
// reports what one container's init costs, from /proc/PID/smaps_rollup:
// private memory (Private_Clean + Private_Dirty, what each container adds),
// PSS (shared pages split among the 10) and RSS (shared pages counted
// whole), medians in kB. The init is the embedded berth-init unless
// BERTH_INIT_PATH names another (e.g. bin/berth-agent, the re-exec'd agent).
func BenchmarkInitMemory(b *testing.B) {
	const n = 10
	e := newEnv(b)
	for i := 0; b.Loop(); i++ {
		var priv, pss, rss []float64
		var cs []*Container
		for j := range n {
			cs = append(cs, e.run(b, e.spec(fmt.Sprintf("mem-%d-%d", i, j), "sleep", "1000")))
		}
		for _, c := range cs {
			m, err := smapsRollup(c.Pid())
			must(b, err)
			priv = append(priv, float64(m["Private_Clean"]+m["Private_Dirty"]))
			pss = append(pss, float64(m["Pss"]))
			rss = append(rss, float64(m["Rss"]))
		}
		for _, c := range cs {
			must(b, c.Delete(b.Context()))
		}
		b.ReportMetric(median(priv), "private-kB")
		b.ReportMetric(median(pss), "pss-kB")
		b.ReportMetric(median(rss), "rss-kB")
	}
}

// smapsRollup reads the kB fields of /proc/PID/smaps_rollup.
func smapsRollup(pid int) (map[string]int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if f := strings.Fields(v); ok && len(f) == 2 && f[1] == "kB" {
			out[k], _ = strconv.Atoi(f[0])
		}
	}
	return out, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}
