package vmtest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// kernelMeta is Debian's package that depends on the current stock kernel.
const kernelMeta = "linux-image-amd64"

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	Package string // e.g. linux-image-6.1.0-57-amd64
	Release string // uname -r, e.g. 6.1.0-57-amd64
	Dir     string // where the package is unpacked
}

// Vmlinuz is the kernel image.
func (k *Kernel) Vmlinuz() string { return filepath.Join(k.Dir, "boot", "vmlinuz-"+k.Release) }

// ModulesDir is the kernel's /lib/modules/<release>.
func (k *Kernel) ModulesDir() string { return filepath.Join(k.Dir, "lib", "modules", k.Release) }

// FetchKernel returns the stock Debian kernel that linux-image-amd64 points
// to, unpacked under cache. The package file comes from `apt-get download`
// and is unpacked with `dpkg-deb -x`: nothing is installed on this host. A
// kernel already in cache is used as it is, also when apt cannot be asked
// (no network).
func FetchKernel(ctx context.Context, cache string, log *slog.Logger) (*Kernel, error) {
	pkg, err := stockKernelPackage(ctx, log)
	if err != nil {
		if k := cachedKernel(cache); k != nil {
			log.Warn("apt cannot name the stock kernel; using the cached one", "kernel", k.Package, "err", err)
			return k, nil
		}
		return nil, err
	}
	k := &Kernel{Package: pkg, Release: strings.TrimPrefix(pkg, "linux-image-"), Dir: filepath.Join(cache, pkg)}
	if _, err := os.Stat(k.Vmlinuz()); err == nil {
		return k, nil
	}
	log.Info("downloading the kernel package", "package", pkg, "cache", cache)
	if err := download(ctx, cache, pkg, k.Dir); err != nil {
		return nil, err
	}
	if _, err := os.Stat(k.Vmlinuz()); err != nil {
		return nil, fmt.Errorf("kernel package %s: %w", pkg, err)
	}
	return k, nil
}

// stockKernelPackage asks apt which linux-image package linux-image-amd64
// depends on, running apt-get update once if apt has no package lists yet.
func stockKernelPackage(ctx context.Context, log *slog.Logger) (string, error) {
	pkg, err := kernelDependency(ctx)
	if err == nil {
		return pkg, nil
	}
	log.Info("apt does not know "+kernelMeta+"; running apt-get update", "err", err)
	if out, uerr := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput(); uerr != nil {
		return "", fmt.Errorf("apt-get update: %w: %s", uerr, bytes.TrimSpace(out))
	}
	return kernelDependency(ctx)
}

func kernelDependency(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", kernelMeta).Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends %s: %w", kernelMeta, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		dep, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "Depends: ")
		if ok && strings.HasPrefix(dep, "linux-image-") {
			return dep, nil
		}
	}
	return "", fmt.Errorf("apt-cache depends %s names no linux-image package:\n%s", kernelMeta, out)
}

// cachedKernel returns a kernel unpacked in cache earlier, if any.
func cachedKernel(cache string) *Kernel {
	dirs, _ := filepath.Glob(filepath.Join(cache, "linux-image-*"))
	for i := len(dirs) - 1; i >= 0; i-- {
		pkg := filepath.Base(dirs[i])
		k := &Kernel{Package: pkg, Release: strings.TrimPrefix(pkg, "linux-image-"), Dir: dirs[i]}
		if _, err := os.Stat(k.Vmlinuz()); err == nil {
			return k
		}
	}
	return nil
}

// download fetches pkg's .deb into a private directory and unpacks it to
// dst. Both steps go through temporary names, so that concurrent runs
// sharing the cache never see half a kernel.
func download(ctx context.Context, cache, pkg, dst string) error {
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	tmp, err := os.MkdirTemp(cache, ".download-")
	if err != nil {
		return fmt.Errorf("kernel cache: %w", err)
	}
	defer os.RemoveAll(tmp)
	// The sandbox user _apt cannot write a root-owned directory.
	get := exec.CommandContext(ctx, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg)
	get.Dir = tmp
	if out, err := get.CombinedOutput(); err != nil {
		return fmt.Errorf("apt-get download %s: %w: %s", pkg, err, bytes.TrimSpace(out))
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "*.deb"))
	if len(debs) != 1 {
		return fmt.Errorf("apt-get download %s: want one .deb, got %v", pkg, debs)
	}
	unpacked := filepath.Join(tmp, "root")
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], unpacked).CombinedOutput(); err != nil {
		return fmt.Errorf("dpkg-deb -x %s: %w: %s", debs[0], err, bytes.TrimSpace(out))
	}
	if err := os.Rename(unpacked, dst); err != nil {
		if _, serr := os.Stat(dst); serr != nil {
			return fmt.Errorf("kernel cache: %w", err)
		}
		// Another run unpacked the same package first.
	}
	return nil
}
