package stack

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
)

// Options say which Compose files to read and with which environment.
type Options struct {
	// Files are the Compose files, in order: each later file is merged
	// over the earlier ones, as `docker stack deploy -c A -c B` does.
	Files []string
	// Env is the environment variables are taken from (KEY=VALUE, e.g.
	// os.Environ()); a `.env` file beside the first file adds to it.
	Env []string
	// Profiles enables services listed under those profiles; services
	// with a profile not enabled are left out.
	Profiles []string
}

// Project is a set of Compose files read, merged and interpolated, with the
// warnings about keys berth does not support.
type Project struct {
	// Name is the stack's name: the prefix of every object it creates.
	Name    string
	compose *types.Project
	loc     *locator
	// Warnings name each key of the files that berth does not use.
	Warnings []Warning
}

// Warning is a key of a Compose file that berth ignores.
type Warning struct {
	// Where is the key's place in its file, "compose.yaml:12", when found.
	Where string
	// Msg says what is ignored, e.g. `service "web": ignoring unsupported option: build`.
	Msg string
}

func (w Warning) String() string {
	if w.Where == "" {
		return w.Msg
	}
	return w.Where + ": " + w.Msg
}

// Load reads the files of o into a project for the stack name.
func Load(ctx context.Context, name string, o Options) (*Project, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if len(o.Files) == 0 {
		return nil, errors.New("no Compose file: give one with -c FILE")
	}
	loc, err := newLocator(o.Files)
	if err != nil {
		return nil, err
	}
	var found []loader.UnsupportedAttribute
	report := func(u []loader.UnsupportedAttribute) { found = u }
	unset := map[string]bool{}
	opts, err := cli.NewProjectOptions(o.Files,
		cli.WithName(name),
		cli.WithWorkingDirectory(filepath.Dir(o.Files[0])),
		cli.WithEnv(o.Env),
		cli.WithEnvFiles(),
		cli.WithDotEnv,
		cli.WithProfiles(o.Profiles),
		cli.WithLoadOptions(loader.WithSupportedAttributes(supported(), report), recordUnset(unset)),
	)
	if err != nil {
		return nil, loc.explain(err)
	}
	cp, err := loadProject(ctx, opts)
	if err != nil {
		return nil, loc.explain(err)
	}
	p := &Project{Name: name, compose: cp, loc: loc}
	for _, v := range sortedKeys(unset) {
		p.Warnings = append(p.Warnings, Warning{Msg: fmt.Sprintf("variable %s is not set: an empty string is used", v)})
	}
	for _, u := range found {
		if _, disabled := cp.DisabledServices[serviceOf(u.Path.String())]; disabled {
			continue
		}
		p.Warnings = append(p.Warnings, loc.warning(u.Path.String()))
	}
	return p, nil
}

// loadProject runs compose-go's loader, which panics on some malformed
// files (a null where it expects a string, found by FuzzStack): that is an
// invalid file, not a crash of berth.
func loadProject(ctx context.Context, opts *cli.ProjectOptions) (p *types.Project, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("the Compose file is not valid (compose-go failed reading it: %v); look for a key with an empty value", r)
		}
	}()
	return opts.LoadProject(ctx)
}

// recordUnset makes interpolation note each variable that is neither set
// nor given a default, instead of compose-go logging it on its own.
// compose-go's replacement handles "${A:-x}/${B}" as one match and
// substitutes what follows the first expression with logging on; the
// match is split here so that every expression comes through replace.
func recordUnset(unset map[string]bool) func(*loader.Options) {
	var replace template.ReplacementFunc
	replace = func(sub string, m template.Mapping, cfg *template.Config) (string, error) {
		head, rest := sub, ""
		if i := closingBrace(sub); i >= 0 {
			head, rest = sub[:i+1], sub[i+1:]
		}
		var missing string
		look := func(k string) (string, bool) {
			v, ok := m(k)
			if !ok {
				missing = k
			}
			return v, ok
		}
		v, applied, err := template.DefaultReplacementAppliedFunc(head, look, cfg)
		if err != nil {
			return v, err
		}
		if !applied && missing != "" {
			unset[missing] = true
		}
		if rest == "" {
			return v, nil
		}
		r, err := template.SubstituteWithOptions(rest, m, template.WithoutLogging, template.WithReplacementFunction(replace))
		return v + r, err
	}
	return func(o *loader.Options) {
		if o.Interpolate == nil {
			return
		}
		o.Interpolate.Substitute = func(s string, m template.Mapping) (string, error) {
			return template.SubstituteWithOptions(s, m, template.WithoutLogging, template.WithReplacementFunction(replace))
		}
	}
}

// closingBrace is the index of the brace that closes the expression s
// starts with ("${A:-${B}}" nests), or -1; as compose-go's template.
func closingBrace(s string) int {
	depth := 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '}':
			if depth--; depth == 0 {
				return i
			}
		case '{':
			depth++
		}
	}
	return -1
}

// serviceOf is the service a key path is under, or "".
func serviceOf(path string) string {
	parts := strings.SplitN(path, ".", 3)
	if len(parts) >= 2 && parts[0] == "services" {
		return parts[1]
	}
	return ""
}

// YAML is the project as berth reads it: merged, interpolated, with paths
// made absolute and defaults filled in (`berth stack config`).
func (p *Project) YAML() ([]byte, error) {
	return p.compose.MarshalYAML()
}

var stackName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// checkName refuses a stack name that could not prefix object names.
func checkName(name string) error {
	if !stackName.MatchString(name) || len(name) > 40 {
		return fmt.Errorf("stack name %q is not valid: use 1-40 lowercase letters, digits, '-' or '_', starting with a letter or digit", name)
	}
	return nil
}
