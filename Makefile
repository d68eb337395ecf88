# berth — build, test, bench, demo. Run as root on Linux for tests and the demo.
SHELL := /bin/bash
GO ?= go
BIN := bin
TOOLS := $(CURDIR)/.tools
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
LDFLAGS := -s -w -X berth/internal/version.Version=$(shell git describe --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags '$(LDFLAGS)'
# Packages whose tests run real containers, namespaces or Raft clusters run
# with -race too; -p bounds parallel test binaries on small machines.
TEST_FLAGS ?= -race -count=1 -p 2 -timeout 15m
# Each fuzz target's run in `make test` is bounded by a count of inputs, not
# a duration: Go 1.26's coordinator can fail a duration-bounded run with a
# bare "context deadline exceeded" when the time runs out while a starved
# worker is mid-input (golang/go#75804, fixed in Go 1.27). The counts take
# 5-20 s here; -timeout still bounds a run that slows down.
FUZZ_FLAGS := -run '^$$' -timeout 3m

# System packages tests and the demo need; installed with apt-get when absent.
DEPS := busybox:busybox-static ip:iproute2 nft:nftables jq:jq nsenter:util-linux etcd:etcd-server

.PHONY: all build build-init test test-cgroup2 unit check proto proto-check deps bench demo demo-down clean sweep faults

all: build

# INIT is the container init, embedded in berth-agent (and berth-manager --dev)
# by package agent/runtime: build-init runs before anything compiles it.
INIT := agent/runtime/initbin/berth-init

build-init:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(INIT) ./internal/cmd/berth-init

build: build-init
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/berth ./cmd/berth
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/berth-manager ./cmd/manager
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o $(BIN)/berth-agent ./cmd/agent

# deps installs missing system packages with apt-get (Debian/Ubuntu).
deps:
	@missing=""; for d in $(DEPS); do cmd=$${d%%:*}; pkg=$${d#*:}; \
	  command -v $$cmd >/dev/null 2>&1 || [ -x /usr/sbin/$$cmd ] || [ -x /bin/$$cmd ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

check: proto-check build-init
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

ETCD_SKIP := -skip '^(TestDNSOnRealHosts|TestOverlayAcrossHosts|TestVIPAndRoutingMesh|TestVIPZeroDowntimeUpdate|TestStatsAndMetricsAcrossNodes)$$'

test: deps check build
	@if [ "$$(id -u)" != 0 ]; then echo "note: not root; tests that need namespaces, cgroups or mounts will skip"; fi
	$(GO) test $(TEST_FLAGS) ./...
	@# The packages that run manager clusters, again with the state in etcd
	@# (a real etcd-server the tests start): BERTH_TEST_STORE=etcd. The e2e
	@# tests of the data plane alone (DNS answers, overlay packets, VIP and
	@# mesh rules, stats) run once: the store's part in them is the same as
	@# in the tests that do run twice.
	BERTH_TEST_STORE=etcd $(GO) test $(TEST_FLAGS) $(ETCD_SKIP) ./manager ./e2e ./e2e/faults
	BERTH_TEST_STORE=etcd $(GO) test $(TEST_FLAGS) -run '^TestDev' ./cmd/manager
	@# Every list command against 100k tasks (issue #17), without -race:
	@# ~10 s here, minutes under the race detector.
	BERTH_LISTS_100K=1 $(GO) test -count=1 -run '^TestListsAt100k$$' ./cmd/berth
	$(GO) test $(FUZZ_FLAGS) -fuzz '^FuzzControl$$' -fuzztime 10000x ./manager/controlapi
	$(GO) test $(FUZZ_FLAGS) -fuzz '^FuzzSpecs$$' -fuzztime 40000x ./manager/validate
	$(GO) test $(FUZZ_FLAGS) -fuzz '^FuzzDNSQuery$$' -fuzztime 100000x ./discovery/dns
	$(GO) test $(FUZZ_FLAGS) -fuzz '^FuzzStack$$' -fuzztime 5000x ./deploy/stack

# faults runs the fault suite (e2e/faults) in full: every scenario, a
# minute of faults each, on Raft and on etcd, and prints the report table.
# make test runs its short form (three scenarios, 8 s of faults each).
# Replay a run with FAULTS_FLAGS='-seed N' (the seed is printed at the start).
faults: deps build
	$(GO) test -count=1 -v -timeout 60m ./e2e/faults -run TestFaults -args -full $(FAULTS_FLAGS)

# test-cgroup2 runs the cgroups, runtime, image and agent tests and a
# `berth-manager --dev` cluster in a qemu VM whose cgroup filesystem is v2
# only (internal/vmtest): a stock Debian kernel fetched with apt-get download
# (never installed on this host; cached in /var/cache/berth-vmtest), KVM when
# the host has it, no network. The console is in bin/cgroup2-vm/console.log.
test-cgroup2: deps build
	@command -v qemu-system-x86_64 >/dev/null 2>&1 || { echo "installing: qemu-system-x86"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-system-x86 >/dev/null; }
	$(GO) run ./internal/cmd/vmtest -bin $(BIN) -out $(BIN)/cgroup2-vm

unit: build-init
	$(GO) test -count=1 -short ./...

# BENCH_DEPS are the yardsticks and clients the benchmarks run next to berth.
BENCH_DEPS := runc:runc dnsperf:dnsperf dnsmasq:dnsmasq-base iperf3:iperf3 redis-server:redis-server redis-benchmark:redis-tools

bench: deps build
	@$(MAKE) --no-print-directory deps DEPS="$(BENCH_DEPS)"
	./bench/run.sh

$(TOOLS)/protoc-gen-go:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)

$(TOOLS)/protoc-gen-go-grpc:
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

proto: $(TOOLS)/protoc-gen-go $(TOOLS)/protoc-gen-go-grpc
	@command -v protoc >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler >/dev/null; }
	rm -f proto/berth/v1/*.pb.go
	PATH=$(TOOLS):$$PATH protoc -I proto \
	  --go_out=. --go_opt=module=berth \
	  --go-grpc_out=. --go-grpc_opt=module=berth \
	  proto/berth/v1/*.proto

# proto-check fails when the committed generated code differs from a fresh generation.
proto-check: proto
	@if [ -n "$$(git status --porcelain -- proto 2>/dev/null)" ]; then \
	  echo "generated code in proto/ differs from 'make proto'; run it and commit:"; git status --short -- proto; exit 1; fi

# The demo runs as a built binary, not with go run: on Ctrl-C go run
# exits 1 (and kills its child's process group on a second interrupt, as
# make's own relaying gives it), so make reported an error after a clean
# teardown. DEMO_FLAGS sizes it (-managers N -agents N).
demo: deps build
	CGO_ENABLED=0 $(GO) build -o $(BIN)/demo ./internal/cmd/demo
	$(BIN)/demo -bin $(BIN) -dir demo-data $(DEMO_FLAGS)

# demo-down removes what a demo killed without Ctrl-C left behind.
demo-down:
	go run ./internal/cmd/demo -down -dir demo-data

sweep:
	$(GO) run ./internal/cmd/sweep

clean:
	rm -rf $(BIN) $(TOOLS) $(INIT)
