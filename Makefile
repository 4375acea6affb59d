# The two commands of the README, and the steps they are made of.
#   make demo   install dependencies, build, run the whole suite locally (Ctrl+C stops it)
#   make test   install dependencies, build, run every test
#   make image  build, then the OCI image build/image/podgate.oci.tar (tools/image/build.sh;
#               docs/deploy.md, "Building the image")
# CI (.ci/run) also runs tools/check-format.sh (clang-format on the changed C++ lines) and
# both sanitizer jobs (`make test-sanitizers`): ASan+UBSan (build-asan/, the unit and
# integration tests; `make test-sanitizers-address`) and TSan (build-tsan/, the exec, edge and
# clients tests; `make test-sanitizers-thread`); docs/architecture.md, "Sanitizer builds".
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= 2

# ccache: make object paths relative so that clones in other folders (CI) share the cache.
export CCACHE_BASEDIR := $(CURDIR)
export CCACHE_NOHASHDIR := true

.PHONY: all deps configure build test test-sanitizers test-sanitizers-address test-sanitizers-thread \
	check-format demo image clean

all: build

deps:
	@bash tools/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	@cd $(BUILD_DIR) && bash $(CURDIR)/tools/ctest-strict.sh -j $(JOBS) --output-on-failure --timeout 900

test-sanitizers: deps
	@bash tools/sanitizers.sh address thread

test-sanitizers-address: deps
	@bash tools/sanitizers.sh address

test-sanitizers-thread: deps
	@bash tools/sanitizers.sh thread

check-format:
	@bash tools/check-format.sh

demo: build
	@bash tools/demo.sh $(BUILD_DIR)

# The OCI image from the binaries `build` made (no second compile): build/image/podgate.oci.tar
# and its SBOM build/image/podgate.spdx.json. Built here with buildah, no registry needed.
image: build
	@bash tools/image/build.sh $(BUILD_DIR)

clean:
	rm -rf $(BUILD_DIR) build-asan build-tsan

# Every benchmark side by side (docs/performance.md): round trip, bulk output, sessions, policy,
# audit; starts what it needs, prints the tables and the goals, writes build/bench/results.json.
# BENCH_ARGS=--quick is the smoke mode ctest runs; BENCH_ARGS=--only=audit runs one suite.
BENCH_ARGS ?=
.PHONY: bench
bench: build
	@python3 tools/bench/bench.py --build_dir=$(BUILD_DIR) $(BENCH_ARGS)

# exec's memory (docs/benchmarks.md): 1,500 sessions after a warm-up, and a soak of long-lived
# sessions for SOAK_DURATION (10m; SOAK_DURATION=30s for a quick look). Not part of `make test`.
SOAK_DURATION ?= 10m
.PHONY: bench-exec soak-exec
bench-exec: build
	@$(BUILD_DIR)/tools/bench/podgate-exec-bench sessions

soak-exec: build
	@$(BUILD_DIR)/tools/bench/podgate-exec-bench soak --duration=$(SOAK_DURATION)
