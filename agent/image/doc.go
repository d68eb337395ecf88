// Package image owns a node's container images: it pulls them by reference or
// digest from OCI and Docker registries, verifies every digest, unpacks each
// layer once into a content-addressed directory, and gives each container its
// own overlayfs root filesystem (a snapshot, in the shape of containerd's
// Snapshotter). It also garbage-collects layers nothing uses any more.
//
// A layer may unpack to at most Config.MaxLayerSize bytes and
// Config.MaxLayerEntries entries; a pull that goes over a limit, or runs
// out of disk space, fails and leaves behind no temp dir and no layer it
// unpacked (a pull failing otherwise keeps its finished layers for a retry).
//
// Everything lives under one root directory:
//
//	ROOT/images.json            image records and reference → digest map
//	ROOT/layers/<hex>/fs         unpacked layer (hex = sha256 of the diffID)
//	ROOT/layers/<hex>/layer.json layer metadata, written before the dir appears
//	ROOT/l/<id>                  short symlink to a layer, for overlay lowerdir
//	ROOT/containers/<key>/       a snapshot: upper, work, rootfs, snapshot.json
//	ROOT/tmp/                    half-made layers; emptied on start
//
// The package must not import berth/proto or know about tasks and services:
// the agent maps its tasks onto snapshot keys. It does not run containers
// either; agent/runtime pivots into the rootfs this package mounts.
package image
