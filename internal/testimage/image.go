package testimage

import (
	"fmt"
	"runtime"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// defaultPath is the PATH every test image sets.
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// newImage assembles a single-layer OCI image for linux on the host's
// architecture. createdBy goes into the history entry of the layer.
func newImage(cfg v1.Config, layer v1.Layer, createdBy string) (v1.Image, error) {
	base := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	base = mutate.ConfigMediaType(base, types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: createdBy,
			Comment:   "berth testimage",
		},
	})
	if err != nil {
		return nil, fmt.Errorf("append layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Created = v1.Time{Time: epoch}
	cf.Config = cfg
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("set config: %w", err)
	}
	return img, nil
}

// built caches images for the life of the process. Images are immutable
// and their layers keep their compressed bytes, so every test after the
// first pushes without compressing again. Failures are not cached.
var built imageCache

type imageCache struct {
	mu     sync.Mutex
	images map[string]v1.Image
}

// get returns the image cached under key, building it on first use. It
// holds the lock while building so that concurrent callers build once.
func (c *imageCache) get(key string, build func() (v1.Image, error)) (v1.Image, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if img, ok := c.images[key]; ok {
		return img, nil
	}
	img, err := build()
	if err != nil {
		return nil, err
	}
	if c.images == nil {
		c.images = map[string]v1.Image{}
	}
	c.images[key] = img
	return img, nil
}
