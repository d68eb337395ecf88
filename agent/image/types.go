package image

import "time"

// Image is a pulled image: what a container needs to be created from it.
type Image struct {
	// Ref is the normalised reference it was last pulled by.
	Ref string `json:"ref"`
	// Digest is the digest Ref resolved to (a manifest or an index); Ref's
	// repository @ Digest pins exactly this image.
	Digest string `json:"digest"`
	// Manifest is the digest of the platform manifest chosen from an index
	// (equal to Digest for single-platform images).
	Manifest string `json:"manifest"`
	// Config is the runtime configuration from the image config.
	Config RunConfig `json:"config"`
	// Layers are the diffIDs (sha256 of the uncompressed tar), base first.
	Layers []string `json:"layers"`
	// Size is the unpacked size of all layers in bytes.
	Size int64 `json:"size"`
}

// RunConfig is the part of an OCI image config a container runtime uses.
type RunConfig struct {
	Entrypoint   []string          `json:"entrypoint,omitempty"`
	Cmd          []string          `json:"cmd,omitempty"`
	Env          []string          `json:"env,omitempty"`
	WorkingDir   string            `json:"working_dir,omitempty"`
	User         string            `json:"user,omitempty"`
	StopSignal   string            `json:"stop_signal,omitempty"`
	ExposedPorts []string          `json:"exposed_ports,omitempty"` // "80/tcp"
	Labels       map[string]string `json:"labels,omitempty"`
	// Healthcheck is the image's HEALTHCHECK, if it has one.
	Healthcheck *HealthConfig `json:"healthcheck,omitempty"`
}

// HealthConfig is an image's HEALTHCHECK, as Docker records it: test is
// ["CMD", ...], ["CMD-SHELL", cmd] or ["NONE"]; zero durations mean the
// defaults.
type HealthConfig struct {
	Test        []string      `json:"test,omitempty"`
	Interval    time.Duration `json:"interval,omitempty"`
	Timeout     time.Duration `json:"timeout,omitempty"`
	StartPeriod time.Duration `json:"start_period,omitempty"`
	Retries     int           `json:"retries,omitempty"`
}

// Progress statuses.
const (
	StatusResolving     = "resolving"      // asking the registry for the manifest
	StatusPulling       = "pulling"        // downloading (and unpacking as bytes arrive)
	StatusExtracting    = "extracting"     // download done, finishing the unpack
	StatusWaiting       = "waiting"        // another pull is fetching this layer
	StatusAlreadyExists = "already exists" // layer was already unpacked
	StatusDone          = "done"           // layer unpacked and verified
)

// Progress reports a pull's advance, per layer, at a modest rate (at most
// every progressInterval per layer, plus each layer's start and end).
type Progress struct {
	Ref        string
	Layer      string // layer digest as in the manifest (its diffID if found locally)
	LayerIndex int    // 0-based, base layer first
	Layers     int    // number of layers in the image
	BytesDone  int64  // compressed bytes downloaded for this layer
	BytesTotal int64  // compressed size of this layer
	Done       bool   // this layer is finished
	Status     string
}

const progressInterval = 100 * time.Millisecond
