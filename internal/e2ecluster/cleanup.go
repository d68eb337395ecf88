package e2ecluster

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"berth/agent/runtime"
)

// CleanupAgent removes what an agent leaves behind on purpose when it
// stops (its containers keep running for the next agent to adopt): every
// container under dir is killed and deleted, and mounts under dir (root
// filesystems, the secrets tmpfs) are unmounted.
func CleanupAgent(dir string) error {
	var errs []error
	rt, err := runtime.New(runtime.Config{DataDir: filepath.Join(dir, "runtime")})
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cs, _ := rt.Adopt(ctx)
		for _, c := range cs {
			if err := c.Delete(ctx); err != nil {
				errs = append(errs, fmt.Errorf("delete container %s: %w", c.ID(), err))
			}
		}
		rt.Close()
	}
	return errors.Join(append(errs, unmountUnder(dir))...)
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	defer f.Close()
	var points []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == abs || strings.HasPrefix(fields[4], abs+"/")) {
			points = append(points, fields[4])
		}
	}
	sort.Slice(points, func(i, j int) bool { return len(points[i]) > len(points[j]) })
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
