package image

import (
	"context"
	"os"
	"path/filepath"
	"time"
)

// GC forgets images that no snapshot uses and that were neither pulled nor
// used within keepRecent, then deletes layers that no remaining image, no
// snapshot and no pull under way needs. It returns the bytes freed. Layers
// in use are known from the records on disk, so a restarted agent's GC never
// removes a running container's layers.
func (s *Store) GC(ctx context.Context, keepRecent time.Duration) (freed int64, err error) {
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	snaps, err := s.readSnapshots()
	if err != nil {
		return 0, err
	}
	keep := map[string]bool{}
	used := map[string]bool{}
	for _, sn := range snaps {
		used[sn.Image] = true
		for _, l := range sn.Layers {
			keep[hexOf(l)] = true
		}
	}
	doomed, freed, err := s.collect(keep, used, keepRecent)
	for _, d := range doomed {
		if ctx.Err() != nil {
			break // already out of sight under tmp/; swept on the next start
		}
		if rerr := os.RemoveAll(d); rerr != nil {
			s.log.Warn("remove unused layer", "dir", d, "err", rerr)
		}
	}
	s.sweepLinks()
	return freed, err
}

// collect forgets unused images and moves unused layers under tmp/, all
// under s.mu so a pull cannot pick up a layer halfway through its removal.
// It returns the moved directories, to delete without the lock.
func (s *Store) collect(keep, used map[string]bool, keepRecent time.Duration) (doomed []string, freed int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	changed := false
	for dg, rec := range s.meta.Images {
		last := rec.Pulled
		if rec.LastUsed.After(last) {
			last = rec.LastUsed
		}
		if used[dg] || now.Sub(last) < keepRecent {
			for _, l := range rec.Layers {
				keep[hexOf(l)] = true
			}
			continue
		}
		delete(s.meta.Images, dg)
		for ref, d := range s.meta.Refs {
			if d == dg {
				delete(s.meta.Refs, ref)
			}
		}
		changed = true
		s.log.Info("forgetting unused image", "ref", rec.Ref, "digest", dg)
	}
	for h := range s.inflight {
		keep[h] = true
	}
	if changed {
		if err := s.saveMeta(); err != nil {
			return nil, 0, diskErr(err, s.root, "gc")
		}
	}
	ents, err := os.ReadDir(s.path("layers"))
	if err != nil {
		return nil, 0, diskErr(err, s.root, "gc")
	}
	for _, e := range ents {
		if keep[e.Name()] {
			continue
		}
		dst, li, err := s.retireLayer(e.Name())
		if err != nil {
			return doomed, freed, diskErr(err, s.root, "gc layer "+e.Name())
		}
		freed += li.Size
		doomed = append(doomed, dst)
		s.log.Debug("removing unused layer", "layer", li.DiffID, "bytes", li.Size)
	}
	return doomed, freed, nil
}

// retireLayer moves layer hex out of sight under tmp/ and removes its link;
// s.mu is held. The caller deletes the returned directory without the lock.
func (s *Store) retireLayer(hex string) (string, layerInfo, error) {
	li, _ := s.readLayerInfo(hex)
	dst := filepath.Join(s.path("tmp"), "gc-"+hex+"-"+linkID())
	if err := os.Rename(s.layerDir(hex), dst); err != nil {
		return "", li, err
	}
	if li.Link != "" {
		os.Remove(s.path("l", li.Link))
	}
	return dst, li, nil
}

// discardLayers deletes layers a failed pull unpacked, unless an image
// record, a snapshot or a pull under way needs them.
func (s *Store) discardLayers(hexes []string) {
	if len(hexes) == 0 {
		return
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	snaps, err := s.readSnapshots()
	if err != nil {
		s.log.Warn("keep the layers of a failed pull", "err", err)
		return
	}
	keep := map[string]bool{}
	for _, sn := range snaps {
		for _, l := range sn.Layers {
			keep[hexOf(l)] = true
		}
	}
	var doomed []string
	s.mu.Lock()
	for _, rec := range s.meta.Images {
		for _, l := range rec.Layers {
			keep[hexOf(l)] = true
		}
	}
	for _, h := range hexes {
		if keep[h] || s.inflight[h] > 0 {
			continue
		}
		dst, li, err := s.retireLayer(h)
		if err != nil {
			s.log.Warn("remove a layer of a failed pull", "layer", li.DiffID, "err", err)
			continue
		}
		doomed = append(doomed, dst)
	}
	s.mu.Unlock()
	for _, d := range doomed {
		if err := os.RemoveAll(d); err != nil {
			s.log.Warn("remove a layer of a failed pull", "dir", d, "err", err)
		}
	}
}

// sweepLinks removes l/ links whose layer is gone.
func (s *Store) sweepLinks() {
	ents, err := os.ReadDir(s.path("l"))
	if err != nil {
		return
	}
	for _, e := range ents {
		p := s.path("l", e.Name())
		if _, err := os.Stat(p); os.IsNotExist(err) {
			os.Remove(p)
		}
	}
}
