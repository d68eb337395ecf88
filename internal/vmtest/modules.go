package vmtest

import (
	"bufio"
	"bytes"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// berthModules are the kernel modules berth needs that Debian's kernel
// builds as modules: overlayfs for image snapshots; veth, bridge, vxlan and
// nf_tables for networking; a virtio disk and loop devices, so that device
// allow-list tests have real block devices to be refused.
func berthModules() []string {
	return []string{
		"overlay",
		"veth", "bridge", "br_netfilter", "vxlan", "dummy",
		"nf_tables", "nf_conntrack", "nf_nat", "nft_chain_nat", "nft_nat", "nft_ct",
		"nft_masq", "nft_redir", "nft_numgen", "nft_hash", "nft_limit", "nft_quota",
		"nft_reject_inet", "nft_fib_inet", "nft_log",
		"virtio_pci", "virtio_blk", "loop",
	}
}

// resolveModules returns the .ko files (relative to modDir) that load
// names, each after the modules it depends on, as modprobe would; names
// built into the kernel (modules.builtin) need no file. Debian's package
// ships no modules.dep (depmod writes it on install), so dependencies are
// read from each module's .modinfo section: "depends=" and the "softdep=
// pre:" modules it needs in practice (libcrc32c needs a crc32c).
func resolveModules(modDir string, names []string) ([]string, error) {
	idx, err := newModIndex(modDir)
	if err != nil {
		return nil, err
	}
	var order []string
	seen := map[string]bool{}
	var visit func(name, wantedBy string) error
	visit = func(name, wantedBy string) error {
		name = modName(name)
		if seen[name] || idx.builtin[name] {
			return nil
		}
		seen[name] = true
		rel, ok := idx.files[name]
		if !ok {
			return fmt.Errorf("kernel module %s (wanted by %s) is neither built in nor in %s", name, wantedBy, modDir)
		}
		info, err := readModinfo(filepath.Join(modDir, rel))
		if err != nil {
			return err
		}
		deps := info.depends
		for _, soft := range info.softPre {
			mods, err := idx.provides(soft)
			if err != nil {
				return err
			}
			deps = append(deps, mods...)
		}
		for _, d := range deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		order = append(order, rel)
		return nil
	}
	for _, n := range names {
		if err := visit(n, "berth"); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// modIndex knows the modules of one kernel.
type modIndex struct {
	dir     string
	files   map[string]string // module name → .ko path relative to dir
	builtin map[string]bool
	aliases map[string][]string // alias → module names; read on first need
}

func newModIndex(dir string) (*modIndex, error) {
	files, err := indexModules(dir)
	if err != nil {
		return nil, err
	}
	builtin, err := builtinModules(dir)
	if err != nil {
		return nil, err
	}
	return &modIndex{dir: dir, files: files, builtin: builtin}, nil
}

// provides names the module that gives name: itself when it is a module
// (or built in), else the first by name of those declaring it as an alias
// (a softdep may name an algorithm: "crc32c" is crc32c_generic, which
// loads on any CPU, before crc32c_intel). A name nothing provides is left
// out, as modprobe does with soft dependencies.
func (x *modIndex) provides(name string) ([]string, error) {
	n := modName(name)
	if _, ok := x.files[n]; ok || x.builtin[n] {
		return []string{n}, nil
	}
	if x.aliases == nil {
		x.aliases = map[string][]string{}
		for _, mod := range sortedKeys(x.files) {
			info, err := readModinfo(filepath.Join(x.dir, x.files[mod]))
			if err != nil {
				return nil, err
			}
			for _, a := range info.aliases {
				x.aliases[a] = append(x.aliases[a], mod)
			}
		}
	}
	if mods := x.aliases[name]; len(mods) > 0 {
		return mods[:1], nil
	}
	return nil, nil
}

// modName normalises a module name: the kernel treats - and _ alike.
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// indexModules maps each module's name to its .ko path under modDir.
func indexModules(modDir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(filepath.Join(modDir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(modDir, p)
			files[modName(p)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules: %w", err)
	}
	return files, nil
}

func builtinModules(modDir string) (map[string]bool, error) {
	data, err := os.ReadFile(filepath.Join(modDir, "modules.builtin"))
	if err != nil {
		return nil, fmt.Errorf("built-in kernel modules: %w", err)
	}
	out := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out[modName(l)] = true
		}
	}
	return out, nil
}

// modinfo is what a module's .modinfo section says about its loading.
type modinfo struct {
	depends []string // modules that must be loaded first
	softPre []string // modules (or aliases) modprobe loads first
	aliases []string
}

func readModinfo(ko string) (modinfo, error) {
	var mi modinfo
	f, err := elf.Open(ko)
	if err != nil {
		return mi, fmt.Errorf("read module %s: %w", ko, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return mi, fmt.Errorf("read module %s: no .modinfo section", ko)
	}
	data, err := sec.Data()
	if err != nil {
		return mi, fmt.Errorf("read module %s: %w", ko, err)
	}
	for _, entry := range strings.Split(string(data), "\x00") {
		key, val, _ := strings.Cut(entry, "=")
		switch key {
		case "depends":
			if val != "" {
				mi.depends = strings.Split(val, ",")
			}
		case "softdep":
			mi.softPre = append(mi.softPre, softPre(val)...)
		case "alias":
			mi.aliases = append(mi.aliases, val)
		}
	}
	return mi, nil
}

// softPre returns the "pre:" modules of a softdep value such as
// "pre: crc32c post: foo".
func softPre(val string) []string {
	var out []string
	pre := false
	for _, f := range strings.Fields(val) {
		switch f {
		case "pre:":
			pre = true
		case "post:":
			pre = false
		default:
			if pre {
				out = append(out, f)
			}
		}
	}
	return out
}
