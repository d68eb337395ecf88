// Command benchtab reads `go test -bench` output on stdin and prints one
// table per package: each benchmark a row, each reported metric a column.
// Lines that are not benchmark results (tables a benchmark printed itself,
// comparisons with peers) pass through unchanged.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
)

type row struct {
	name    string
	metrics map[string]string
}

func main() {
	var rows []row
	var units []string
	seen := map[string]bool{}
	flush := func(pkg string) {
		if len(rows) == 0 {
			return
		}
		fmt.Printf("\n== %s\n", pkg)
		tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "benchmark\t")
		for _, u := range units {
			fmt.Fprintf(tw, "%s\t", u)
		}
		fmt.Fprintln(tw)
		for _, r := range rows {
			fmt.Fprintf(tw, "%s\t", r.name)
			for _, u := range units {
				fmt.Fprintf(tw, "%s\t", r.metrics[u])
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
		rows, units, seen = nil, nil, map[string]bool{}
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) >= 4 && strings.HasPrefix(f[0], "Benchmark"):
			r := row{name: strings.TrimPrefix(f[0], "Benchmark"), metrics: map[string]string{"runs": f[1]}}
			if !seen["runs"] {
				seen["runs"], units = true, append(units, "runs")
			}
			for i := 2; i+1 < len(f); i += 2 {
				r.metrics[f[i+1]] = f[i]
				if !seen[f[i+1]] {
					seen[f[i+1]], units = true, append(units, f[i+1])
				}
			}
			rows = append(rows, r)
		case len(f) >= 2 && (f[0] == "ok" || f[0] == "FAIL" || f[0] == "PASS"):
			if f[0] != "PASS" {
				flush(f[1])
			}
			if f[0] == "FAIL" {
				fmt.Println(line)
			}
		case strings.HasPrefix(line, "goos:") || strings.HasPrefix(line, "goarch:") || strings.HasPrefix(line, "pkg:") || strings.HasPrefix(line, "cpu:"):
		default:
			fmt.Println(line)
		}
	}
	flush("(end)")
}
