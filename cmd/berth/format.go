package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"text/template"
	"time"
	"unicode"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// addFormatFlag adds --format to a list or inspect command: table or json,
// or a Go template (see formatHelp).
func addFormatFlag(cmd *cobra.Command, def string) *string {
	f := new(string)
	cmd.Flags().StringVar(f, "format", def, "output `FORMAT`: "+formatHelp)
	return f
}

// checkFormat refuses a --format that is neither table, json nor a Go
// template that parses.
func checkFormat(f string) error {
	if f == "table" || f == "json" {
		return nil
	}
	_, err := parseTemplate(f)
	return err
}

// printJSON writes messages as one JSON array, fields named as in the .proto files.
func printJSON[M proto.Message](w io.Writer, msgs []M) error {
	raw := make([]json.RawMessage, 0, len(msgs))
	for _, m := range msgs {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(m)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	out, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(out))
	return err
}

// table writes aligned columns; the first row is the header.
func table(w io.Writer, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// ago renders a past time as docker does: "3 seconds ago".
func ago(t time.Time, now time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "less than a second ago"
	case d < time.Minute:
		return plural(int(d.Seconds()), "second") + " ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour") + " ago"
	default:
		return plural(int(d.Hours()/24), "day") + " ago"
	}
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}

// shortID is the 12-character form of an ID used in tables.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// lowerEnum turns ENUM_PREFIX_VALUE into "value".
func lowerEnum(s, prefix string) string {
	return strings.ToLower(strings.TrimPrefix(s, prefix))
}

// formatHelp describes --format on every list and inspect command.
const formatHelp = `table, json, or a Go template as Docker's: "{{.Spec.Name}}" or "{{json .}}" on an object, ` +
	`"{{.ID}} {{.Name}}" on a list's columns; "table {{.ID}}\t{{.Name}}" adds the header`

// templateFuncs are Docker's template functions that make sense here.
var templateFuncs = template.FuncMap{
	"json": func(v any) (string, error) {
		b, err := json.Marshal(v)
		return string(b), err
	},
	"join":  strings.Join,
	"lower": strings.ToLower,
	"upper": strings.ToUpper,
	"title": func(s string) string {
		if s == "" {
			return s
		}
		return strings.ToUpper(s[:1]) + s[1:]
	},
	"split": strings.Split,
	"pad": func(s string, n int) string {
		return s + strings.Repeat(" ", max(0, n-len(s)))
	},
}

// parseTemplate reads a --format template; a "table " prefix is left to
// printRows.
func parseTemplate(f string) (*template.Template, error) {
	f = strings.TrimPrefix(f, "table ")
	t, err := template.New("format").Funcs(templateFuncs).Option("missingkey=error").Parse(unescapeTabs(f))
	if err != nil {
		return nil, fmt.Errorf("--format %q: %v; use table, json or a Go template such as '{{.ID}}'", f, err)
	}
	return t, nil
}

// unescapeTabs turns the \t and \n a shell passes literally into tabs and
// newlines, as Docker does.
func unescapeTabs(s string) string {
	return strings.NewReplacer(`\t`, "\t", `\n`, "\n").Replace(s)
}

// printObjects writes an inspect command's objects: as one JSON array, or
// each through the template f, one a line.
func printObjects[M proto.Message](w io.Writer, f string, msgs []M) error {
	if f == "json" || f == "" {
		return printJSON(w, msgs)
	}
	t, err := parseTemplate(f)
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := execLine(w, t, templateData(m)); err != nil {
			return err
		}
	}
	return nil
}

// printRows writes a list (the first row is its header) as a table, or
// each row through the template f, its fields named after the columns:
// NAME is .Name, DESIRED STATE is .DesiredState, ID is .ID. With a
// "table " prefix the output is aligned under a header.
func printRows(w io.Writer, f string, rows [][]string) error {
	if f == "table" || f == "" {
		return table(w, rows)
	}
	t, err := parseTemplate(f)
	if err != nil {
		return err
	}
	keys := make([]string, len(rows[0]))
	head := map[string]string{}
	for i, h := range rows[0] {
		keys[i] = columnKey(h)
		head[keys[i]] = h
	}
	out := w
	var tw *tabwriter.Writer
	if strings.HasPrefix(f, "table ") {
		tw = tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
		out = tw
		if err := execLine(out, t, head); err != nil {
			return err
		}
	}
	for _, r := range rows[1:] {
		row := map[string]string{}
		for i, v := range r {
			row[keys[i]] = v
		}
		if err := execLine(out, t, row); err != nil {
			return err
		}
	}
	if tw != nil {
		return tw.Flush()
	}
	return nil
}

func execLine(w io.Writer, t *template.Template, v any) error {
	var b bytes.Buffer
	if err := t.Execute(&b, v); err != nil {
		return fmt.Errorf("--format: %v", err)
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// columnKey is a column's name in a template: "DESIRED STATE" is
// DesiredState, "ID" stays ID.
func columnKey(h string) string {
	var b strings.Builder
	for _, word := range strings.Fields(h) {
		if word == "ID" {
			b.WriteString(word)
			continue
		}
		b.WriteString(word[:1] + strings.ToLower(word[1:]))
	}
	return b.String()
}

// templateData is an object as Docker's templates see one: every field
// there, zero or not, named in Go style (Spec, NodeID, CreatedAt); enums
// by name, times in RFC 3339, bytes as text; and the annotations' name
// and labels also on the object that has them, so {{.Spec.Name}} works
// as in Docker.
func templateData(m proto.Message) any {
	return messageData(m.ProtoReflect())
}

func messageData(m protoreflect.Message) any {
	switch v := m.Interface().(type) {
	case *timestamppb.Timestamp:
		return v.AsTime().Format(time.RFC3339Nano)
	case *durationpb.Duration:
		return v.AsDuration().String()
	}
	if !m.IsValid() {
		return nil
	}
	out := map[string]any{}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		out[goName(string(fd.Name()))] = fieldData(fd, m.Get(fd), m.Has(fd))
	}
	if a, ok := out["Annotations"].(map[string]any); ok {
		for k, val := range a {
			if _, taken := out[k]; !taken {
				out[k] = val
			}
		}
	}
	return out
}

func fieldData(fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) any {
	switch {
	case fd.IsList():
		l := v.List()
		out := make([]any, l.Len())
		for i := range l.Len() {
			out[i] = scalarData(fd, l.Get(i), true)
		}
		return out
	case fd.IsMap():
		out := map[string]any{}
		v.Map().Range(func(k protoreflect.MapKey, val protoreflect.Value) bool {
			out[k.String()] = scalarData(fd.MapValue(), val, true)
			return true
		})
		return out
	}
	return scalarData(fd, v, has)
}

func scalarData(fd protoreflect.FieldDescriptor, v protoreflect.Value, has bool) any {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !has {
			return nil
		}
		return messageData(v.Message())
	case protoreflect.EnumKind:
		if e := fd.Enum().Values().ByNumber(v.Enum()); e != nil {
			return string(e.Name())
		}
		return int32(v.Enum())
	case protoreflect.BytesKind:
		return string(v.Bytes())
	}
	return v.Interface()
}

// goName turns a proto field name into Go's: node_id is NodeID.
func goName(s string) string {
	var b strings.Builder
	for _, part := range strings.Split(s, "_") {
		switch {
		case part == "":
		case part == "id" || part == "ip" || part == "cpu" || part == "tls" || part == "url":
			b.WriteString(strings.ToUpper(part))
		default:
			r := []rune(part)
			r[0] = unicode.ToUpper(r[0])
			b.WriteString(string(r))
		}
	}
	return b.String()
}
