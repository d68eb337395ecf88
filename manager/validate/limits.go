package validate

import (
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	pb "berth/proto/berth/v1"
)

// Bounds on what one spec may hold. They are generous next to any real
// service, but finite: a spec is replicated to every manager, sent to each
// agent running its tasks and walked by the scheduler at every placement,
// so one request must not be able to make all of that arbitrarily large.
// Kubernetes bounds an object at 1.5 MiB and labels at 63/253 bytes;
// the kernel bounds arguments, paths and host names as noted.
const (
	// MaxSpecBytes bounds a whole service spec as encoded.
	MaxSpecBytes = 512 << 10

	maxLabels      = 256
	maxLabelKey    = 253 // a Kubernetes qualified name with its prefix
	maxLabelValue  = 4096
	maxArgs        = 4096      // entries of command, args, env, healthcheck test
	maxArgBytes    = 128 << 10 // one argument: the kernel's MAX_ARG_STRLEN
	maxMounts      = 256
	maxSecrets     = 256
	maxConfigs     = 256
	maxPorts       = 1024
	maxNetworks    = 64
	maxAliases     = 64
	maxConstraints = 128
	maxPreferences = 16
	maxPath        = 4096 // PATH_MAX
	maxHostname    = 64   // HOST_NAME_MAX: sethostname refuses longer
	maxImage       = 1024 // a reference is at most ~460 bytes (name 255, tag 128, digest)
	maxShort       = 1024 // user, signal, constraint, alias, port name, registry names
	maxFilters     = 1024 // entries of one list filter
)

// tooMany refuses a list of n entries over max.
func tooMany(field string, n, max int, fix string) error {
	if n <= max {
		return nil
	}
	return fieldErr(field, fmt.Sprintf("%d entries, over the limit of %d", n, max), "%s", fix)
}

// tooLong refuses a string of more than max bytes.
func tooLong(field, s string, max int) error {
	if len(s) <= max {
		return nil
	}
	return fieldErr(field, fmt.Sprintf("%d bytes, over the limit of %d", len(s), max), "shorten it to at most %d bytes", max)
}

// each applies check to every string of list, naming the entry.
func each(field string, list []string, check func(field, s string) error) error {
	for i, s := range list {
		if err := check(fmt.Sprintf("%s[%d]", field, i), s); err != nil {
			return err
		}
	}
	return nil
}

func argLen(field, s string) error   { return tooLong(field, s, maxArgBytes) }
func shortLen(field, s string) error { return tooLong(field, s, maxShort) }

// quote shows user input in an error, cut short: a message must not echo
// back a megabyte the client sent.
func quote(s string) string {
	const max = 64
	if len(s) <= max {
		return fmt.Sprintf("%q", s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%q… (%d bytes)", s[:cut], len(s))
}

// labels bounds a label map: count, key and value sizes; keys not empty.
func labels(field string, m map[string]string) error {
	if err := tooMany(field, len(m), maxLabels, "keep labels to what tools select on; put data in a config file or secret"); err != nil {
		return err
	}
	for k, v := range m {
		if k == "" {
			return fieldErr(field, "empty label key", "use key=value")
		}
		if len(k) > maxLabelKey {
			return fieldErr(field, fmt.Sprintf("key %s is %d bytes, over the limit of %d", quote(k), len(k), maxLabelKey), "use a shorter key")
		}
		if len(v) > maxLabelValue {
			return fieldErr(field, fmt.Sprintf("value of %s is %d bytes, over the limit of %d", quote(k), len(v), maxLabelValue), "put large data in a config file or secret")
		}
	}
	return nil
}

// serviceLimits bounds a service spec's size before anything else looks
// at it, so the costlier checks never run on a huge spec.
func serviceLimits(s *pb.ServiceSpec) error {
	if n := proto.Size(s); n > MaxSpecBytes {
		return fieldErr("spec", fmt.Sprintf("%d bytes encoded, over the limit of %d", n, MaxSpecBytes),
			"keep data out of the spec: put it in the image, a secret or a volume")
	}
	if err := labels("labels", s.GetAnnotations().GetLabels()); err != nil {
		return err
	}
	if err := tooMany("networks", len(s.GetNetworks()), maxNetworks, "attach fewer networks"); err != nil {
		return err
	}
	for i, n := range s.GetNetworks() {
		f := fmt.Sprintf("networks[%d]", i)
		if err := firstErr(shortLen(f, n.GetTarget()), tooMany(f+".aliases", len(n.GetAliases()), maxAliases, "give fewer aliases"),
			each(f+".aliases", n.GetAliases(), shortLen)); err != nil {
			return err
		}
	}
	if err := tooMany("ports", len(s.GetEndpoint().GetPorts()), maxPorts, "publish fewer ports, or split the service"); err != nil {
		return err
	}
	for i, p := range s.GetEndpoint().GetPorts() {
		if err := shortLen(fmt.Sprintf("ports[%d].name", i), p.GetName()); err != nil {
			return err
		}
	}
	return taskLimits(s.GetTask())
}

func taskLimits(t *pb.TaskSpec) error {
	c := t.GetContainer()
	p := t.GetPlacement()
	return firstErr(
		tooLong("image", c.GetImage(), maxImage),
		tooMany("command", len(c.GetCommand()), maxArgs, "pass fewer arguments, or put them in a script in the image"),
		each("command", c.GetCommand(), argLen),
		tooMany("args", len(c.GetArgs()), maxArgs, "pass fewer arguments, or put them in a script in the image"),
		each("args", c.GetArgs(), argLen),
		tooMany("env", len(c.GetEnv()), maxArgs, "set fewer variables, or put configuration in a file (a secret or a volume)"),
		each("env", c.GetEnv(), argLen),
		shortLen("user", c.GetUser()),
		tooLong("workdir", c.GetWorkdir(), maxPath),
		tooLong("hostname", c.GetHostname(), maxHostname),
		shortLen("stop_signal", c.GetStopSignal()),
		labels("container_labels", c.GetLabels()),
		tooMany("mounts", len(c.GetMounts()), maxMounts, "mount fewer paths, or mount a common parent"),
		mountLimits(c.GetMounts()),
		fileLimits(secretKind, secretRefs(c.GetSecrets())),
		fileLimits(configKind, configRefs(c.GetConfigs())),
		tooMany("healthcheck.test", len(c.GetHealthcheck().GetTest()), maxArgs, "put the check in a script in the image"),
		each("healthcheck.test", c.GetHealthcheck().GetTest(), argLen),
		shortLen("registry_auth.server", c.GetRegistryAuth().GetServer()),
		shortLen("registry_auth.username", c.GetRegistryAuth().GetUsername()),
		tooMany("placement.constraints", len(p.GetConstraints()), maxConstraints, "combine constraints, e.g. with a node label"),
		each("placement.constraints", p.GetConstraints(), shortLen),
		tooMany("placement.preferences", len(p.GetPreferences()), maxPreferences, "spread over fewer descriptors"),
	)
}

func mountLimits(ms []*pb.Mount) error {
	for i, m := range ms {
		f := fmt.Sprintf("mounts[%d]", i)
		if err := firstErr(tooLong(f+".source", m.GetSource(), maxPath), tooLong(f+".target", m.GetTarget(), maxPath)); err != nil {
			return err
		}
	}
	return nil
}

// Filters bounds a list request's filters: each is matched against every
// object listed.
func Filters(f *pb.ListFilters) error {
	const fix = "give fewer, or list everything and filter locally"
	return firstErr(
		tooMany("filters.names", len(f.GetNames()), maxFilters, fix),
		tooMany("filters.name_prefixes", len(f.GetNamePrefixes()), maxFilters, fix),
		tooMany("filters.id_prefixes", len(f.GetIdPrefixes()), maxFilters, fix),
		tooMany("filters.labels", len(f.GetLabels()), maxFilters, fix),
	)
}

// TaskFilters bounds a task list request.
func TaskFilters(serviceIDs, nodeIDs []string, states int) error {
	const fix = "ask for fewer at once"
	return firstErr(
		tooMany("service_ids", len(serviceIDs), maxFilters, fix),
		tooMany("node_ids", len(nodeIDs), maxFilters, fix),
		tooMany("desired_states", states, maxFilters, fix),
	)
}

// firstErr returns the first error of errs. Its arguments are all
// evaluated; each is a cheap bound check.
func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
