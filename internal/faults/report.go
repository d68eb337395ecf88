package faults

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Row is one scenario's line in the report.
type Row struct {
	Scenario string
	Backend  string
	Seed     uint64
	Ops      Counts
	// Faults lists the faults injected, in order, e.g. "kill -9 m2 ×3".
	Faults string
	// Recovery is how long after the last fault healed every invariant
	// held; negative when they never did.
	Recovery time.Duration
	// Invariants is "ok" or the first violation.
	Invariants string
	// Linearizable is porcupine's verdict on the history.
	Linearizable string
}

// PrintTable writes the report table.
func PrintTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 2, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tSTORE\tSEED\tOPS (acked/failed/unknown)\tFAULTS\tRECOVERY\tINVARIANTS\tLINEARIZABLE")
	for _, r := range rows {
		rec := "never"
		if r.Recovery >= 0 {
			rec = r.Recovery.Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d (%d/%d/%d)\t%s\t%s\t%s\t%s\n", r.Scenario, r.Backend, r.Seed,
			r.Ops.Total, r.Ops.Acked, r.Ops.Failed, r.Ops.Unknown, r.Faults, rec, r.Invariants, r.Linearizable)
	}
	tw.Flush()
}
