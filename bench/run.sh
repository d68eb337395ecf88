#!/usr/bin/env bash
# make bench: every benchmark of berth, printed as tables. Runs as root (the
# runtime benchmarks start real containers; the store ones run Raft clusters
# on loopback). BENCH selects benchmarks (a go test -bench regexp);
# BENCHTIME sets -benchtime.
set -uo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-.}
bt=()
[ -n "${BENCHTIME:-}" ] && bt=(-benchtime "$BENCHTIME")
pkgs=$(go list ./... | while read -r p; do
  d=$(go list -f '{{.Dir}}' "$p"); grep -qs '^func Benchmark' "$d"/*_test.go && echo "$p"; done)
echo "berth benchmarks on $(nproc) cores, $(uname -r), $(date -u +%FT%TZ)"
echo "(machine noise: figures on a shared 2-core VM vary by 10-30% run to run)"
status=0
for p in $pkgs; do
  go test -run '^$' -bench "$BENCH" "${bt[@]}" -benchmem -timeout 30m "$p" 2>&1 | go run ./bench/benchtab || status=1
done
exit $status
