package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/template"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/encoding/protojson"

	pb "berth/proto/berth/v1"
)

// statsOpts are the flags of `stats`.
type statsOpts struct {
	noStream bool
	format   string
}

func newStatsCmd(g *globalOpts) *cobra.Command {
	var o statsOpts
	cmd := &cobra.Command{
		Use:   "stats [OPTIONS] [SERVICE...]",
		Short: "Show running tasks' CPU, memory, network and block I/O, and PIDs, live",
		Long: "Show the resource usage of running tasks (of the services named, or all), read from\n" +
			"their cgroups by each node's agent and refreshed every second, as `docker stats` does;\n" +
			"tasks that start later join, tasks that stop leave (json prints a line with gone).\n" +
			"Memory leaves out the reclaimable page cache. A task whose node is down says so.\n" +
			"--format takes table, json (one object a line) or a Go template over .ID, .Name,\n" +
			".Node, .CPUPerc, .MemUsage, .MemPerc, .NetIO, .BlockIO, .PIDs and .Error.",
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := newStatsPrinter(o.format, cmd.OutOrStdout(), !o.noStream)
			if err != nil {
				return err
			}
			req := &pb.StatsRequest{Services: args, NoStream: o.noStream}
			return g.stream(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				return runStats(ctx, c, req, p)
			})
		},
	}
	cmd.Flags().BoolVar(&o.noStream, "no-stream", false, "print one sample of each task and exit")
	cmd.Flags().StringVar(&o.format, "format", "table", "output format: table, json or a Go template")
	return cmd
}

// runStats reads the samples and prints them: each second while they
// stream, once at the end with --no-stream.
func runStats(ctx context.Context, c pb.ControlClient, req *pb.StatsRequest, p *statsPrinter) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in, err := c.Stats(ctx, req)
	if err != nil {
		return err
	}
	msgs := make(chan *pb.StatsMessage)
	ended := make(chan error, 1)
	go func() {
		for {
			m, err := in.Recv()
			if err != nil {
				ended <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				ended <- ctx.Err()
				return
			}
		}
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case m := <-msgs:
			p.add(m.GetStats())
		case <-tick.C:
			if req.GetNoStream() {
				continue
			}
			if err := p.print(); err != nil {
				return err
			}
		case err := <-ended:
			if errors.Is(err, io.EOF) {
				return p.print()
			}
			if ctx.Err() != nil {
				return nil // interrupted
			}
			return err
		}
	}
}

// statsRow is one task's line, with the names `docker stats` templates use.
type statsRow struct {
	ID, Name, Node              string
	CPUPerc, MemUsage, MemPerc  string
	NetIO, BlockIO, PIDs, Error string
}

// statsPrinter keeps the last sample of every task and prints them.
type statsPrinter struct {
	w      io.Writer
	format string
	tmpl   *template.Template
	live   bool // redraw in place on a terminal
	last   map[string]*pb.TaskStats
	fresh  []*pb.TaskStats // samples not printed yet (json)
}

func newStatsPrinter(format string, w io.Writer, stream bool) (*statsPrinter, error) {
	p := &statsPrinter{w: w, format: format, last: map[string]*pb.TaskStats{}}
	switch format {
	case "table", "json":
	default:
		if !strings.Contains(format, "{{") {
			return nil, fmt.Errorf("--format %q: use table, json or a Go template such as '{{.Name}} {{.MemUsage}}'", format)
		}
		t, err := template.New("format").Parse(format)
		if err != nil {
			return nil, fmt.Errorf("--format: %w", err)
		}
		p.tmpl = t
	}
	if f, ok := w.(*os.File); ok && stream && format == "table" {
		_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
		p.live = err == nil
	}
	return p, nil
}

func (p *statsPrinter) add(ss []*pb.TaskStats) {
	for _, s := range ss {
		if s.GetGone() {
			delete(p.last, s.GetTaskId()) // it stopped: docker stats drops it too
			continue
		}
		p.last[s.GetTaskId()] = s
	}
	p.fresh = append(p.fresh, ss...)
}

// print writes the table (cleared first on a terminal), the template's
// lines, or the JSON of the samples that came since the last print.
func (p *statsPrinter) print() error {
	switch {
	case p.format == "json":
		fresh := p.fresh
		p.fresh = nil
		for _, s := range fresh {
			b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(s)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(p.w, string(b)); err != nil {
				return err
			}
		}
		return nil
	case p.tmpl != nil:
		for _, r := range p.rows() {
			if err := p.tmpl.Execute(p.w, r); err != nil {
				return fmt.Errorf("--format: %w", err)
			}
			fmt.Fprintln(p.w)
		}
		return nil
	}
	if p.live {
		fmt.Fprint(p.w, "\033[2J\033[H")
	}
	rows := [][]string{{"TASK ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %", "NET I/O", "BLOCK I/O", "PIDS"}}
	var errs []string
	for _, r := range p.rows() {
		rows = append(rows, []string{shortID(r.ID), r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs})
		if r.Error != "" {
			errs = append(errs, fmt.Sprintf("%s (%s): %s", r.Name, shortID(r.ID), r.Error))
		}
	}
	if err := table(p.w, rows); err != nil {
		return err
	}
	for _, e := range errs {
		fmt.Fprintln(p.w, e)
	}
	if !p.live {
		fmt.Fprintln(p.w)
	}
	return nil
}

// rows are the tasks' last samples by name.
func (p *statsPrinter) rows() []statsRow {
	var out []statsRow
	for _, s := range p.last {
		out = append(out, newStatsRow(s))
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].ID < out[j].ID
	})
	return out
}

func newStatsRow(s *pb.TaskStats) statsRow {
	r := statsRow{ID: s.GetTaskId(), Name: s.GetName(), Node: s.GetNodeId(), Error: s.GetError()}
	if r.Error != "" {
		r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs = "--", "-- / --", "--", "-- / --", "-- / --", "--"
		return r
	}
	r.CPUPerc = fmt.Sprintf("%.2f%%", s.GetCpuPercent())
	limit := "unlimited"
	r.MemPerc = "--"
	if l := s.GetMemoryLimitBytes(); l > 0 {
		limit = binaryBytes(l)
		r.MemPerc = fmt.Sprintf("%.2f%%", float64(s.GetMemoryBytes())/float64(l)*100)
	}
	r.MemUsage = binaryBytes(s.GetMemoryBytes()) + " / " + limit
	r.NetIO = decimalBytes(s.GetNetRxBytes()) + " / " + decimalBytes(s.GetNetTxBytes())
	r.BlockIO = decimalBytes(s.GetBlockReadBytes()) + " / " + decimalBytes(s.GetBlockWriteBytes())
	r.PIDs = fmt.Sprint(s.GetPids())
	return r
}

// binaryBytes renders memory as Docker does: 1.5MiB, 512KiB, 12B.
func binaryBytes(n uint64) string {
	return units(float64(n), 1024, []string{"B", "KiB", "MiB", "GiB", "TiB"})
}

// decimalBytes renders I/O as Docker does: 1.2MB, 648B.
func decimalBytes(n uint64) string {
	return units(float64(n), 1000, []string{"B", "kB", "MB", "GB", "TB"})
}

func units(v, base float64, names []string) string {
	i := 0
	for v >= base && i < len(names)-1 {
		v /= base
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f%s", v, names[0])
	}
	return fmt.Sprintf("%.4g%s", v, names[i])
}
