package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
)

func TestUnpackStreamChecksDiffID(t *testing.T) {
	layer := tarLayer(t, file("a", "a"))
	wrong := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("0", 64)}
	_, err := unpackStream(context.Background(), bytes.NewReader(layer), t.TempDir(), wrong, limits{}, slog.New(slog.DiscardHandler))
	if !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("err = %v, want ErrDigestMismatch", err)
	}
	right := sha256.Sum256(layer)
	dir := t.TempDir()
	n, err := unpackStream(context.Background(), bytes.NewReader(layer), dir, v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(right[:])}, limits{}, slog.New(slog.DiscardHandler))
	if err != nil || n != 1 {
		t.Fatalf("unpack = %d, %v", n, err)
	}
}

func TestPullStalledRegistryFails(t *testing.T) {
	reg := newRegistry(t)
	img := reg.push(t, "slow:v1", tarLayer(t, file("f", strings.Repeat("z", 1<<20))))
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	reg.stall = d.String()
	s := newStore(t, testRoot(t), func(c *Config) { c.StallTimeout = 300 * time.Millisecond })
	start := time.Now()
	_, err := s.Pull(ctxT(t), reg.Host+"/slow:v1", nil)
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "stopped sending") {
		t.Fatalf("err = %v, want ErrUnreachable (stalled)", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("stalled pull took %s to fail", el)
	}
	assertNothingLeft(t, s)
}

func TestImagesShareLayerDownloads(t *testing.T) {
	reg := newRegistry(t)
	base := tarLayer(t, file("base", strings.Repeat("q", 1<<20)))
	img := reg.push(t, "a:v1", base)
	reg.push(t, "b:v1", base, tarLayer(t, file("b", "b")))
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	reg.reset()
	s := newStore(t, testRoot(t), nil)
	var wg sync.WaitGroup
	for _, ref := range []string{"a:v1", "b:v1", "a:v1", "b:v1"} {
		wg.Go(func() {
			if _, err := s.Pull(ctxT(t), reg.Host+"/"+ref, nil); err != nil {
				t.Errorf("pull %s: %v", ref, err)
			}
		})
	}
	wg.Wait()
	if n := reg.requests("/blobs/" + d.String()); n != 1 {
		t.Errorf("shared layer downloaded %d times, want 1", n)
	}
}

// benchLayer makes a ~50 MB layer of mixed files: many small text files,
// some medium, a few large half-compressible ones, dirs and symlinks.
func benchLayer(b *testing.B) (gz []byte, raw int64, diffID v1.Hash) {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	write := func(h *tar.Header, body []byte) {
		h.ModTime, h.Mode, h.Size = testMtime, 0o644, int64(len(body))
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			b.Fatal(err)
		}
		tw.Write(body)
	}
	body := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			if i%2 == 0 {
				p[i] = byte(rng.Uint32())
			} else {
				p[i] = 'a' + byte(i%26)
			}
		}
		return p
	}
	total := 0
	for d := 0; total < 50<<20; d++ {
		dn := fmt.Sprintf("usr/lib/pkg%03d/", d)
		write(&tar.Header{Name: dn, Typeflag: tar.TypeDir}, nil)
		for f := range 40 {
			n := 512 + rng.IntN(16<<10)
			if f == 0 && d%10 == 0 {
				n = 4 << 20
			}
			write(&tar.Header{Name: fmt.Sprintf("%sf%02d", dn, f), Typeflag: tar.TypeReg}, body(n))
			total += n
		}
		write(&tar.Header{Name: dn + "link", Typeflag: tar.TypeSymlink, Linkname: "f00"}, nil)
	}
	tw.Close()
	sum := sha256.Sum256(buf.Bytes())
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(buf.Bytes())
	zw.Close()
	return zb.Bytes(), int64(buf.Len()), v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// BenchmarkUnpack measures layer unpack throughput (gunzip, both digests,
// extraction) in MB/s of uncompressed tar, on the temp dir's disk and on
// tmpfs (CPU-bound; needs root to mount).
func BenchmarkUnpack(b *testing.B) {
	gz, raw, diffID := benchLayer(b)
	b.Run("disk", func(b *testing.B) { benchUnpack(b, testRoot(b), gz, raw, diffID) })
	b.Run("tmpfs", func(b *testing.B) {
		needRoot(b)
		root := testRoot(b)
		if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=512m"); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
		benchUnpack(b, root, gz, raw, diffID)
	})
}

func benchUnpack(b *testing.B, root string, gz []byte, raw int64, diffID v1.Hash) {
	log := slog.New(slog.DiscardHandler)
	b.SetBytes(raw)
	for i := 0; b.Loop(); i++ {
		dir := filepath.Join(root, fmt.Sprint(i))
		os.Mkdir(dir, 0o755)
		if _, err := unpackStream(context.Background(), hashedReader(gz), dir, diffID, limits{}, log); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(raw)*float64(b.N)/1e6/b.Elapsed().Seconds(), "MB/s")
}

// hashedReader mimics download: the compressed stream is hashed too.
func hashedReader(p []byte) *hashReader {
	return &hashReader{r: bytes.NewReader(p), h: sha256.New(), emit: func(Progress) {}}
}
