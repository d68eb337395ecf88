package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"berth/agent/image"
	"berth/agent/runtime"
)

// Executor is what task controllers need from the node: images, root
// filesystems and containers. The agent drives agent/image and
// agent/runtime through it; controller tests drive fakes.
type Executor interface {
	// Pull fetches an image, reporting progress; opts carry a task's
	// registry credentials.
	Pull(ctx context.Context, ref string, progress func(image.Progress), opts ...image.PullOption) (image.Image, error)
	// Prepare gives container key a root filesystem made from img.
	Prepare(ctx context.Context, key string, img image.Image) (rootfs string, err error)
	// Run starts a container.
	Run(ctx context.Context, spec runtime.Spec) (Container, error)
	// Container returns the known container with id, running or exited.
	Container(id string) (Container, bool)
	// Remove deletes container id (stopping it first if it runs) and its
	// root filesystem; removing what does not exist is not an error.
	Remove(ctx context.Context, id string) error
	// IDs lists the containers and root filesystems present on the node.
	IDs(ctx context.Context) ([]string, error)
}

// Container is one task's container, as Executor returns it.
type Container interface {
	ID() string
	Pid() int
	Wait(ctx context.Context) (runtime.ExitStatus, error)
	Stop(ctx context.Context, grace time.Duration) (runtime.ExitStatus, error)
	Exec(ctx context.Context, e runtime.ExecSpec) (int, error)
	Exited() (runtime.ExitStatus, bool)
}

// localExecutor runs containers on this node through agent/image and
// agent/runtime; a container's ID and its snapshot key are the task ID.
type localExecutor struct {
	images *image.Store
	rt     *runtime.Runtime
}

func (e *localExecutor) Pull(ctx context.Context, ref string, progress func(image.Progress), opts ...image.PullOption) (image.Image, error) {
	return e.images.Pull(ctx, ref, progress, opts...)
}

func (e *localExecutor) Prepare(ctx context.Context, key string, img image.Image) (string, error) {
	return e.images.Prepare(ctx, key, img)
}

func (e *localExecutor) Run(ctx context.Context, spec runtime.Spec) (Container, error) {
	c, err := e.rt.Run(ctx, spec)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (e *localExecutor) Container(id string) (Container, bool) {
	c, err := e.rt.Get(id)
	if err != nil {
		return nil, false
	}
	return c, true
}

func (e *localExecutor) Remove(ctx context.Context, id string) error {
	var errs []error
	if c, err := e.rt.Get(id); err == nil {
		if c.Running() {
			if _, err := c.Stop(ctx, 0); err != nil && !errors.Is(err, runtime.ErrNotRunning) {
				errs = append(errs, fmt.Errorf("stop container %s: %w", id, err))
			}
		}
		if err := c.Delete(ctx); err != nil {
			errs = append(errs, fmt.Errorf("delete container %s: %w", id, err))
		}
	}
	if err := e.images.Remove(ctx, id); err != nil {
		errs = append(errs, fmt.Errorf("remove rootfs of %s: %w", id, err))
	}
	return errors.Join(errs...)
}

func (e *localExecutor) IDs(ctx context.Context) ([]string, error) {
	seen := map[string]bool{}
	var ids []string
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for _, c := range e.rt.List() {
		add(c.ID())
	}
	snaps, err := e.images.Snapshots(ctx)
	if err != nil {
		return ids, fmt.Errorf("list snapshots: %w", err)
	}
	for _, s := range snaps {
		add(s.Key)
	}
	return ids, nil
}
