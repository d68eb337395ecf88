package stack

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v4"
)

// Error is a problem at a key of a Compose file.
type Error struct {
	// File is the file as the user named it; Line and Column are 1-based,
	// 0 when the key was not found in the files given (it may come from
	// extends or from a default).
	File         string
	Line, Column int
	// Key is the dotted path of the key, e.g. services.web.deploy.replicas.
	Key string
	Msg string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", e.Line, e.Column)
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// locator finds keys in the Compose files as written, to say where a
// problem is. Files later in the list override earlier ones, so a key is
// looked for from the last file back.
type locator struct {
	names []string // as given
	abs   []string
	roots []*yaml.Node // nil when a file does not parse
}

func newLocator(files []string) (*locator, error) {
	l := &locator{names: files}
	for _, f := range files {
		abs, err := filepath.Abs(f)
		if err != nil {
			return nil, err
		}
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read Compose file: %w", err)
		}
		var root yaml.Node
		if err := yaml.Unmarshal(b, &root); err != nil {
			return nil, syntaxError(f, err)
		}
		var doc *yaml.Node
		if len(root.Content) > 0 {
			doc = root.Content[0]
		}
		l.abs, l.roots = append(l.abs, abs), append(l.roots, doc)
	}
	return l, nil
}

var yamlMark = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: ([^:]*)$`)

// syntaxError places a YAML syntax error in its file: the problem's line
// and column are the last mark in yaml's message. yaml v4 (rc.4, the one
// compose-go pins) counts lines from 0 in its parser errors and from 1 in
// its scanner errors; the parser's are shifted here (a test holds both).
func syntaxError(file string, err error) error {
	msg := strings.TrimPrefix(strings.Join(strings.Fields(err.Error()), " "), "yaml: ")
	e := &Error{File: file, Msg: msg}
	m := yamlMark.FindStringSubmatch(msg)
	if m == nil {
		return e
	}
	e.Line, _ = strconv.Atoi(m[1])
	e.Column, _ = strconv.Atoi(m[2])
	if e.Column == 0 {
		e.Column = 1
	}
	var pe interface{ Error() string }
	if errors.As(err, &pe) && fmt.Sprintf("%T", pe) == "libyaml.ParserError" {
		e.Line++
	}
	e.Msg = m[3]
	return e
}

// find returns the file index and node of path (dot-separated; "[]" or
// a number for list items), or of its deepest part found.
func (l *locator) find(path string, prefer int) (int, *yaml.Node) {
	parts := splitPath(path)
	bestFile, bestDepth := -1, -1
	var best *yaml.Node
	order := make([]int, 0, len(l.roots))
	if prefer >= 0 {
		order = append(order, prefer)
	}
	for i := len(l.roots) - 1; i >= 0; i-- {
		if i != prefer {
			order = append(order, i)
		}
	}
	for _, i := range order {
		n, depth := descend(l.roots[i], parts)
		if n != nil && depth > bestDepth {
			best, bestFile, bestDepth = n, i, depth
		}
		if depth == len(parts) {
			break
		}
	}
	return bestFile, best
}

func splitPath(path string) []string {
	if path == "" {
		return nil
	}
	return strings.Split(path, ".")
}

// descend follows parts from n as far as they go.
func descend(n *yaml.Node, parts []string) (*yaml.Node, int) {
	if n == nil {
		return nil, -1
	}
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if len(parts) == 0 {
		return n, 0
	}
	var kids []*yaml.Node // candidates for parts[0]; each is tried
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == parts[0] {
				kids = append(kids, n.Content[i+1])
				keyNode := n.Content[i]
				if len(parts) == 1 {
					return keyNode, 1
				}
			}
		}
	case yaml.SequenceNode:
		if idx, err := strconv.Atoi(parts[0]); err == nil && idx >= 0 && idx < len(n.Content) {
			kids = []*yaml.Node{n.Content[idx]}
		} else if parts[0] == "[]" {
			kids = n.Content
		}
	}
	var best *yaml.Node
	bestDepth := 0
	for _, k := range kids {
		found, depth := descend(k, parts[1:])
		if found != nil && depth+1 > bestDepth {
			best, bestDepth = found, depth+1
		}
		if depth == len(parts)-1 {
			break
		}
	}
	if best == nil {
		if len(kids) > 0 {
			return kids[0], 1
		}
		return n, 0
	}
	return best, bestDepth
}

// at is the position of path, searched first in the file with absolute
// name abs (when not empty).
func (l *locator) at(path, abs string) *Error {
	prefer := -1
	for i, a := range l.abs {
		if a == abs {
			prefer = i
		}
	}
	e := &Error{Key: displayPath(path)}
	i, n := l.find(path, prefer)
	switch {
	case i >= 0 && n != nil:
		e.File, e.Line, e.Column = l.names[i], n.Line, n.Column
	case prefer >= 0:
		e.File = l.names[prefer]
	case len(l.names) == 1:
		e.File = l.names[0]
	}
	return e
}

// errorf is an error at path with a message.
func (l *locator) errorf(path, format string, args ...any) *Error {
	e := l.at(path, "")
	e.Msg = fmt.Sprintf(format, args...)
	return e
}

// warning names an unsupported key at path.
func (l *locator) warning(path string) Warning {
	e := l.at(path, "")
	w := Warning{Msg: describe(path)}
	if e.File != "" && e.Line > 0 {
		w.Where = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	return w
}

// describe words an unsupported key for a person: which object and which
// option within it.
func describe(path string) string {
	parts := splitPath(displayPath(path))
	kinds := map[string]string{"services": "service", "networks": "network", "volumes": "volume", "secrets": "secret", "configs": "config"}
	if kind, ok := kinds[parts[0]]; ok && len(parts) >= 3 {
		return fmt.Sprintf("%s %q: ignoring unsupported option: %s", kind, parts[1], strings.Join(parts[2:], "."))
	}
	return "ignoring unsupported option: " + strings.Join(parts, ".")
}

// displayPath writes list items as name[] and restores dots in keys.
func displayPath(path string) string {
	path = strings.ReplaceAll(path, ".[]", "[]")
	return strings.ReplaceAll(path, "👻", ".")
}

var (
	schemaErr = regexp.MustCompile(`^validating (.+?): (\S+) (.*)$`)
	yamlLine  = regexp.MustCompile(`^failed to parse (.+?): (?:yaml: )?(?:line (\d+): )?(.*)$`)
	extraKey  = regexp.MustCompile(`additional properties? '([^']+)'`)
	bareErr   = regexp.MustCompile(`^((?:services|networks|volumes|secrets|configs)\.[^\s:]+):? (.*)$`)
	interpErr = regexp.MustCompile(`^error while interpolating (\S+): (.*)$`)
	decodeErr = regexp.MustCompile(`'([^']+)' (.*)`)
	undefErr  = regexp.MustCompile(`^service "([^"]+)" refers to undefined (network|secret|config|volume) (.*?)(: invalid compose project)?$`)
)

// explain turns compose-go's errors into errors at a file, line and key
// where it can find them.
func (l *locator) explain(err error) error {
	msg := err.Error()
	if m := schemaErr.FindStringSubmatch(msg); m != nil {
		path := m[2]
		if k := extraKey.FindStringSubmatch(m[3]); k != nil && !strings.Contains(k[1], "', '") {
			path += "." + k[1]
		}
		e := l.at(path, m[1])
		e.Msg = m[3]
		return e
	}
	if m := bareErr.FindStringSubmatch(msg); m != nil {
		e := l.at(m[1], "")
		e.Msg = m[2]
		return e
	}
	if m := interpErr.FindStringSubmatch(msg); m != nil {
		e := l.at(m[1], "")
		e.Msg = m[2]
		return e
	}
	if m := undefErr.FindStringSubmatch(msg); m != nil {
		e := l.at("services."+m[1]+"."+m[2]+"s", "")
		e.Msg = fmt.Sprintf("%s %q is not declared; declare it under the top-level %ss:", m[2], m[3], m[2])
		return e
	}
	if strings.HasPrefix(msg, "decoding failed") {
		if m := decodeErr.FindStringSubmatch(msg); m != nil {
			e := l.at(strings.NewReplacer("[", ".", "]", "").Replace(m[1]), "")
			e.Msg = m[2]
			return e
		}
	}
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		e := &Error{File: l.nameOf(m[1]), Msg: m[3]}
		e.Line, _ = strconv.Atoi(m[2])
		if e.Line > 0 {
			e.Column = 1
		}
		return e
	}
	for i, a := range l.abs {
		msg = strings.ReplaceAll(msg, a, l.names[i])
	}
	return errors.New(msg)
}

func (l *locator) nameOf(abs string) string {
	for i, a := range l.abs {
		if a == abs {
			return l.names[i]
		}
	}
	return abs
}
