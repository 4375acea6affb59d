#!/usr/bin/env bash
# Sanitizer builds and their tests (manual jobs, `make test-sanitizers`; docs/architecture.md,
# "Sanitizer builds", says what they still report and why CI does not run them yet):
#
#   tools/sanitizers.sh [address|thread]...     (default: address thread)
#
#   address  build-asan/: clang, -fsanitize=address,undefined -fno-sanitize-recover=all (ASan,
#            LeakSanitizer, UBSan; any report is fatal); builds and runs the unit and
#            integration tests (targets tests-unit tests-integration, ctest -L
#            "unit|integration"; the chart, the page and the fuzzers are not registered in a
#            sanitizer build).
#   thread   build-tsan/: clang, -fsanitize=thread, with tools/sanitizers/absl_mutex_tsan.cc
#            linked into every executable (TSan annotations for Debian's absl::Mutex); builds
#            and runs the exec, edge, policy and clients tests, unit and integration, and
#            the interposer's own test (ctest -L "exec|edge|policy|clients|sanitizers").
#
# Each job prints its build and test times (docs/architecture.md records them).
# The integration tests spawn the service binaries of the same build directory, so they are
# sanitized too. Every process writes its reports to <build-dir>/sanitizer-logs/ (log_path), and
# the job fails when any report is there, even one from a child process whose exit status a test
# did not look at. Suppressions (third-party frames only, each one justified) are in
# tools/sanitizers/. Environment: PODGATE_SANITIZE_JOBS (build and test parallelism, default 2),
# PODGATE_SANITIZE_CXX (default clang++).
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

jobs="${PODGATE_SANITIZE_JOBS:-2}"
cxx="${PODGATE_SANITIZE_CXX:-clang++}"
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=true

# Sets CPU to the CPU seconds (user + system) used so far by this shell's finished children
# (bash `times`, which must run in this shell, not in a $(...) subshell). Wall time depends on
# what else the machine runs; CPU time divided by the cores is what a step costs on an idle
# machine, so both are printed.
cpu_now() {
  local f
  f="$(mktemp)"
  times >"$f"
  CPU="$(awk 'NR == 2 {
    s = 0
    for (i = 1; i <= 2; i++) { split($i, p, "m"); s += p[1] * 60 + p[2] }
    printf "%d", s
  }' "$f")"
  rm -f "$f"
}

run() {
  local kind="$1"
  local dir labels
  case "$kind" in
    address)
      dir=build-asan
      labels="unit|integration"
      ;;
    thread)
      dir=build-tsan
      labels="exec|edge|policy|clients|sanitizers"
      ;;
    *)
      echo "sanitizers: unknown job '$kind' (address or thread)" >&2
      return 2
      ;;
  esac

  local start=$SECONDS
  cpu_now
  local cpu_start=$CPU
  echo "sanitizers: $kind: configuring and building $dir"
  # -O1 and line tables only: sanitized code at -O2 with full debug info builds much slower for
  # the same reports.
  cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER="$cxx" \
    -DPODGATE_SANITIZE="$kind" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only -DNDEBUG" \
    >/dev/null || return 1
  # Only the test executables carrying the job's labels and what they spawn (the tests-<label>
  # targets, CMakeLists.txt): no benchmarks, no tools the tests do not run.
  local targets=()
  local label
  for label in ${labels//|/ }; do
    targets+=("tests-$label")
  done
  cmake --build "$dir" -j "$jobs" --target "${targets[@]}" || return 1
  local built=$SECONDS
  cpu_now
  local cpu_built=$CPU
  echo "sanitizers: $kind: built in $((built - start))s ($((cpu_built - cpu_start)) CPU-s);" \
    "testing (ctest -L \"$labels\")"

  rm -rf "$dir/sanitizer-logs"
  mkdir -p "$dir/sanitizer-logs"
  local logs="$root/$dir/sanitizer-logs"
  if [ "$kind" = address ]; then
    # LeakSanitizer runs at exit (lsan.supp); halt_on_error is ASan's default. A 16 MiB
    # quarantine (default 256) keeps the tests that bound a process's memory (a 100 MB stream
    # through exec, a slow reader on edge) meaningful.
    export ASAN_OPTIONS="detect_leaks=1:check_initialization_order=1:strict_init_order=1:quarantine_size_mb=16:log_path=$logs/asan:log_exe_name=1"
    export LSAN_OPTIONS="suppressions=$root/tools/sanitizers/lsan.supp:print_suppressions=0"
    export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$logs/ubsan:log_exe_name=1"
  else
    export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$root/tools/sanitizers/tsan.supp:log_path=$logs/tsan:log_exe_name=1"
  fi
  local status=0
  # Not under ASan:
  # - EdgeTest.ASlowReaderKeepsEdgeMemoryBounded bounds edge's memory growth to 14 KiB per
  #   connection, and EdgeTest.AStdinFloodWhileExecAcceptsNothingKeepsEdgeMemoryBounded to
  #   14 MiB in all: ASan's redzones and quarantine alone exceed both (26 KiB and 19.4 MiB
  #   measured);
  # - EdgeTest.OutOfDescriptorsTheAcceptLoopBacksOffAndRecovers runs edge out of descriptors,
  #   and UBSan's vptr check reads an object's vtable only after probing the memory through a
  #   pipe it cannot create then: every virtual call is reported as "invalid vptr" (it was,
  #   boost::system::error_code::message in the accept loop's backoff line).
  # Under TSan (shadow memory, its own allocator) the memory bounds are not meaningful either.
  local exclude="^$"
  if [ "$kind" = address ]; then
    exclude="^(lanes\.)?(EdgeTest\.(ASlowReaderKeepsEdgeMemoryBounded|AStdinFloodWhileExecAcceptsNothingKeepsEdgeMemoryBounded|OutOfDescriptorsTheAcceptLoopBacksOffAndRecovers))$"
  else
    exclude="^(lanes\.)?(EdgeTest\.ASlowReaderKeepsEdgeMemoryBounded|ExecTest\.HundredMegabytesStreamWithBoundedMemory)$"
  fi
  (cd "$dir" && bash "$root/tools/ctest-strict.sh" -j "$jobs" -L "$labels" -E "$exclude" \
    --output-on-failure --timeout 900) ||
    status=$?
  cpu_now
  echo "sanitizers: $kind: tests took $((SECONDS - built))s ($((CPU - cpu_built)) CPU-s)"

  local reports
  reports="$(find "$dir/sanitizer-logs" -type f -size +0 | sort)"
  if [ -n "$reports" ]; then
    echo "sanitizers: $kind: reports in $dir/sanitizer-logs:" >&2
    for report in $reports; do
      echo "==== $report" >&2
      head -n 80 "$report" >&2
    done
    status=1
  fi
  if [ "$status" -ne 0 ]; then
    echo "sanitizers: $kind FAILED" >&2
  else
    echo "sanitizers: $kind passed ($((SECONDS - start))s)"
  fi
  return "$status"
}

jobs_to_run=("$@")
if [ "${#jobs_to_run[@]}" -eq 0 ]; then
  jobs_to_run=(address thread)
fi
overall=0
for kind in "${jobs_to_run[@]}"; do
  (run "$kind") || overall=1
done
exit "$overall"
