package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "berth/proto/berth/v1"
)

// logsOpts are the flags of `service logs`.
type logsOpts struct {
	follow, timestamps, noTaskIDs bool
	tail, since                   string
}

func newServiceLogsCmd(g *globalOpts) *cobra.Command {
	var o logsOpts
	cmd := &cobra.Command{
		Use:   "logs [OPTIONS] SERVICE|TASK",
		Short: "Show the output of a service's tasks, merged, or of one task",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := o.request(args[0], time.Now())
			if err != nil {
				return err
			}
			return g.stream(cmd.Context(), func(ctx context.Context, c pb.ControlClient) error {
				return printLogs(ctx, c, req, &o, cmd.OutOrStdout(), cmd.ErrOrStderr())
			})
		},
	}
	fs := cmd.Flags()
	fs.BoolVarP(&o.follow, "follow", "f", false, "keep printing new output, and that of tasks started later")
	fs.StringVarP(&o.tail, "tail", "n", "all", "number of lines to show from the end of each task's log")
	fs.StringVar(&o.since, "since", "", "show lines since a time (2026-01-02T15:04:05Z, a Unix time, or a duration ago such as 10m)")
	fs.BoolVarP(&o.timestamps, "timestamps", "t", false, "show when each line was written")
	fs.BoolVar(&o.noTaskIDs, "no-task-ids", false, "leave task IDs out of the line prefixes")
	return cmd
}

// request turns the flags into a ServiceLogsRequest.
func (o *logsOpts) request(target string, now time.Time) (*pb.ServiceLogsRequest, error) {
	req := &pb.ServiceLogsRequest{ServiceId: target, Follow: o.follow}
	if o.tail != "all" {
		n, err := strconv.ParseInt(o.tail, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--tail %q: give a number of lines (0 or more) or all", o.tail)
		}
		req.Tail = &n
	}
	if o.since != "" {
		t, err := parseSince(o.since, now)
		if err != nil {
			return nil, err
		}
		req.SinceUnixNano = t.UnixNano()
	}
	return req, nil
}

// parseSince reads a time as Docker's --since does: RFC 3339 (with or
// without the zone), a Unix time in seconds, or a duration before now.
func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f >= 0 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: give a time (2026-01-02T15:04:05Z), a Unix time, or a duration ago such as 10m", s)
}

// printLogs prints the log lines of req's target as they arrive, each
// prefixed with NAME.SLOT.TASK@NODE as `docker service logs` does; a task
// whose log cannot be read is reported on errOut.
func printLogs(ctx context.Context, c pb.ControlClient, req *pb.ServiceLogsRequest, o *logsOpts, out, errOut io.Writer) error {
	p := &logPrinter{c: c, o: o, out: out, errOut: errOut, atStart: map[string]bool{}}
	if err := p.resolve(ctx, req.GetServiceId()); err != nil {
		return err
	}
	st, err := c.ServiceLogs(ctx, req)
	if err != nil {
		return err
	}
	return recvAll(ctx, st.Recv, func(m *pb.LogMessage) error { p.print(ctx, m); return nil })
}

// recvAll hands each message of a stream to fn until the stream ends; a
// stream ended because the caller's context did (Ctrl-C, --until) is no
// error.
func recvAll[T any](ctx context.Context, recv func() (T, error), fn func(T) error) error {
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := fn(m); err != nil {
			return err
		}
	}
}

// logPrinter labels and prints log lines.
type logPrinter struct {
	c           pb.ControlClient
	o           *logsOpts
	out, errOut io.Writer
	service     string
	hosts       map[string]string // node ID → hostname
	atStart     map[string]bool   // task ID → the next data starts a line
}

// resolve finds the name of the target's service and the nodes' names.
func (p *logPrinter) resolve(ctx context.Context, target string) error {
	svc, err := p.c.GetService(ctx, &pb.GetServiceRequest{ServiceId: target})
	if status.Code(err) == codes.NotFound {
		t, terr := p.c.GetTask(ctx, &pb.GetTaskRequest{TaskId: target})
		if terr != nil {
			if status.Code(terr) == codes.NotFound {
				return fmt.Errorf("no service or task %q: see berth service ls and berth service ps SERVICE", target)
			}
			return terr
		}
		svc, err = p.c.GetService(ctx, &pb.GetServiceRequest{ServiceId: t.GetTask().GetServiceId()})
	}
	if err != nil {
		return err
	}
	p.service = svc.GetService().GetSpec().GetAnnotations().GetName()
	return p.listNodes(ctx)
}

func (p *logPrinter) listNodes(ctx context.Context) error {
	nodes, err := p.c.ListNodes(ctx, &pb.ListNodesRequest{})
	if err != nil {
		return err
	}
	p.hosts = map[string]string{}
	for _, n := range nodes.GetNodes() {
		p.hosts[n.GetId()] = n.GetDescription().GetHostname()
	}
	return nil
}

// prefix is NAME.SLOT.TASK@NODE (NAME.SLOT@NODE with --no-task-ids).
func (p *logPrinter) prefix(ctx context.Context, m *pb.LogMessage) string {
	host, ok := p.hosts[m.GetNodeId()]
	if !ok {
		_ = p.listNodes(ctx) // a node that joined since the start
		host = p.hosts[m.GetNodeId()]
	}
	if host == "" {
		host = shortID(m.GetNodeId())
	}
	name := fmt.Sprintf("%s.%d", p.service, m.GetSlot())
	if !p.o.noTaskIDs {
		name += "." + shortID(m.GetTaskId())
	}
	return name + "@" + host
}

func (p *logPrinter) print(ctx context.Context, m *pb.LogMessage) {
	if e := m.GetError(); e != "" {
		fmt.Fprintf(p.errOut, "berth: logs of %s: %s\n", p.prefix(ctx, m), e)
		return
	}
	data := string(m.GetData())
	var b strings.Builder
	for data != "" {
		line, rest, nl := strings.Cut(data, "\n")
		if start, seen := p.atStart[m.GetTaskId()]; start || !seen {
			b.WriteString(p.prefix(ctx, m))
			b.WriteString(" | ")
			if p.o.timestamps && m.GetTimestampUnixNano() != 0 {
				b.WriteString(time.Unix(0, m.GetTimestampUnixNano()).UTC().Format(time.RFC3339Nano))
				b.WriteByte(' ')
			}
		}
		b.WriteString(line)
		if nl {
			b.WriteByte('\n')
		}
		p.atStart[m.GetTaskId()] = nl
		data = rest
	}
	io.WriteString(p.out, b.String())
}
