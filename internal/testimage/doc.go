// Package testimage builds berth's test images without any container daemon
// and serves them from an in-process OCI registry.
//
// It owns three things:
//
//   - Busybox: an image made from Debian's static busybox (/bin/busybox,
//     package busybox-static): /bin/busybox, a symlink per applet
//     (/bin/sh, /bin/sleep, /usr/bin/wget, /usr/bin/nslookup,
//     /usr/sbin/httpd, ...), /etc/passwd and /etc/group with root and
//     nobody, /tmp with mode 1777. Cmd is ["sh"], Env sets PATH.
//   - App: the small static Go server in ./app, compiled with `go build`
//     (CGO_ENABLED=0, -trimpath, no VCS stamp) the first time it is needed
//     in a process. Entrypoint is ["/app"]; Env sets PATH, PORT=8080 and
//     APP_VERSION=<version>, so app:v1 and app:v2 differ in digest and a
//     rolling update can be watched through GET /. The app answers
//     GET / with {hostname, version, remote_addr, dns}, where dns holds the
//     nameservers and search domains of its /etc/resolv.conf and, for
//     GET /?lookup=NAME, the addresses NAME resolves to; GET /health with
//     200 "ok", or 503 after POST /health/fail until POST /health/ok; and
//     it exits with status 0 on SIGTERM, logging "shutting down".
//   - Registry: go-containerregistry's pkg/registry, in memory, served with
//     net/http over plain HTTP on a random 127.0.0.1 port (StartRegistryAt
//     takes another address for pullers in other network namespaces).
//
// Images are single-layer OCI images for linux on the host's architecture.
// Layers are deterministic (entries sorted by path, owner root, one fixed
// mtime, fixed creation time), so a digest is the same in every run on the
// same machine with the same busybox, source and Go toolchain. Built
// images are cached for the life of the process.
//
// Tests call Serve, which starts a registry, pushes busybox:latest, app:v1
// and app:v2, returns their tag and by-digest references, and stops the
// registry when the test ends:
//
//	f := testimage.Serve(t)
//	spec.Image = f.AppV1.ByDigest // "127.0.0.1:PORT/app@sha256:..."
//
// The demo and other non-test tools use the same thing without a testing.TB:
// Start (or StartRegistry, then Push with Busybox and App) and Close. App
// runs the go tool, so such tools must run from inside the berth module
// tree with the go tool on PATH.
//
// This package must not be imported by production code paths (manager,
// agent): it execs the go tool and busybox and keeps images in memory. It
// does not pull or unpack images; that is agent/image's job, and tests here
// pull back only to check what was pushed.
package testimage
