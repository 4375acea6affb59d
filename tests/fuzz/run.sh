#!/usr/bin/env bash
# Builds the fuzz targets (tests/fuzz: a standalone CMake project compiled by clang with
# libFuzzer, ASan and UBSan) and runs each one for <seconds-per-target> on a copy of its seed
# corpus, so the corpus in the repository is never modified. Fails on any crash, sanitizer report,
# leak or timeout; the input that caused it is kept in <build-dir>/artifacts/.
#
#   tests/fuzz/run.sh <build-dir> <seconds-per-target> [target...]
#   tests/fuzz/run.sh <build-dir> build          (builds the targets, runs none)
#
# Without targets, every target podgate_fuzz_target() declares runs. PODGATE_FUZZ_PREBUILT=1
# runs the targets already built without configuring or building (ctest's fuzz.<name> entries,
# which run side by side after fuzz.build: two builds in one tree at once would corrupt it).
# Exits 77 (ctest's "skipped") when clang is missing: tools/install-deps.sh installs it.
set -euo pipefail

if [ "$#" -lt 2 ]; then
  echo "usage: $0 <build-dir> <seconds-per-target> [target...] | $0 <build-dir> build" >&2
  exit 2
fi
here="$(cd "$(dirname "$0")" && pwd)"
build="$1"
seconds="$2"
shift 2
if [ "$seconds" != build ] && ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz: <seconds-per-target> must be a positive whole number or 'build', not '$seconds'" >&2
  exit 2
fi

clangxx="${PODGATE_FUZZ_CXX:-clang++}"
if ! command -v "$clangxx" >/dev/null 2>&1; then
  echo "fuzz: $clangxx not found, skipping (tools/install-deps.sh installs clang)"
  exit 77
fi

if [ "${PODGATE_FUZZ_PREBUILT:-0}" = 1 ]; then
  if [ ! -f "$build/fuzz_targets.txt" ]; then
    echo "fuzz: PODGATE_FUZZ_PREBUILT=1 but nothing is built in $build (run: $0 $build build)" >&2
    exit 2
  fi
else
  generator=()
  if command -v ninja >/dev/null 2>&1; then
    generator=(-G Ninja)
  fi
  cmake -S "$here" -B "$build" "${generator[@]}" -DCMAKE_CXX_COMPILER="$clangxx" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$build" -j "${PODGATE_FUZZ_JOBS:-2}"
fi
if [ "$seconds" = build ]; then
  echo "fuzz: built $(wc -l < "$build/fuzz_targets.txt") targets in $build"
  exit 0
fi

targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < "$build/fuzz_targets.txt"
fi

mkdir -p "$build/artifacts"
status=0
for target in "${targets[@]}"; do
  [ -n "$target" ] || continue
  binary="$build/${target}_fuzzer"
  if [ ! -x "$binary" ]; then
    echo "fuzz: no target '$target' (known: $(tr '\n' ' ' < "$build/fuzz_targets.txt"))" >&2
    exit 2
  fi
  corpus="$(mktemp -d)"
  trap 'rm -rf "$corpus"' EXIT
  if [ -d "$here/corpus/$target" ]; then
    cp -R "$here/corpus/$target/." "$corpus/"
  fi
  options=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
           -artifact_prefix="$build/artifacts/$target-")
  if [ -f "$here/dict/$target.dict" ]; then
    options+=(-dict="$here/dict/$target.dict")
  fi
  echo "fuzz: $target for ${seconds}s on $(ls "$corpus" | wc -l) seeds"
  log="$build/$target.log"
  if ASAN_OPTIONS="detect_leaks=1:abort_on_error=1" UBSAN_OPTIONS="print_stacktrace=1" \
    "$binary" "${options[@]}" "$corpus" > "$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^Done" "$log" || true
    echo "fuzz: $target passed"
  else
    tail -n 60 "$log"
    echo "fuzz: $target FAILED; the input is in $build/artifacts/$target-*, the log in $log" >&2
    status=1
  fi
  rm -rf "$corpus"
  trap - EXIT
done
exit "$status"
