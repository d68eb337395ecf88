package main

import (
	"fmt"
	"io"
	"os"
	"time"

	pb "berth/proto/berth/v1"
)

// Secrets and configs are both named files for containers: the code here
// serves `berth secret` and `berth config` alike.

// readData reads a secret's or config's content from file, or from stdin
// for "-". The manager refuses empty and oversized ones.
func readData(stdin io.Reader, file, noun string) ([]byte, error) {
	if file == "-" {
		b, err := io.ReadAll(stdin)
		if err != nil {
			return nil, fmt.Errorf("read the %s from stdin: %w", noun, err)
		}
		return b, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read the %s: %w", noun, err)
	}
	return b, nil
}

// fileObject is what `secret ls` and `config ls` show of one.
type fileObject struct {
	id          string
	meta        *pb.Meta
	annotations *pb.Annotations
}

// printFileObjects lists secrets or configs: their IDs alone with quiet,
// else a table or a template over its columns.
func printFileObjects(w io.Writer, format string, quiet bool, objs []fileObject) error {
	if quiet {
		for _, o := range objs {
			fmt.Fprintln(w, o.id)
		}
		return nil
	}
	now := time.Now()
	rows := [][]string{{"ID", "NAME", "CREATED", "UPDATED", "LABELS"}}
	for _, o := range objs {
		rows = append(rows, []string{o.id, o.annotations.GetName(),
			ago(o.meta.GetCreatedAt().AsTime(), now), ago(o.meta.GetUpdatedAt().AsTime(), now),
			labelString(o.annotations.GetLabels())})
	}
	return printRows(w, format, rows)
}

// refKeys are what update's --secret-rm and --config-rm match a
// reference by: the object's name or ID, or the reference's target.
type refKeys struct{ name, id, target string }

// editRefs drops from cur the references rm names (by name, ID or
// target; target brings a target to its stored form) and those whose
// target an added one takes, then appends adds.
func editRefs[R any](cur, adds []R, rm []string, keys func(R) refKeys, target func(string) string) []R {
	drop := map[string]bool{}
	for _, r := range rm {
		drop[r] = true
		drop["target:"+target(r)] = true
	}
	for _, a := range adds {
		drop["target:"+target(keys(a).target)] = true
	}
	var keep []R
	for _, ref := range cur {
		k := keys(ref)
		if drop[k.name] || drop[k.id] || drop["target:"+target(k.target)] {
			continue
		}
		keep = append(keep, ref)
	}
	return append(keep, adds...)
}
