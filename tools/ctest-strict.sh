#!/usr/bin/env bash
# Runs ctest with the given arguments (in the current directory, a build tree) and fails when a
# test was skipped. GoogleTest reports every test of a suite whose SetUpTestSuite failed (a
# stack that did not start, a binary that is missing) as "[  SKIPPED ]", and ctest counts a test
# with that output as skipped, not failed: a suite that never ran would pass unseen.
# PODGATE_ALLOW_SKIPPED_TESTS=1 accepts skips (a machine where a test skips itself, e.g. one
# that needs root).
set -uo pipefail
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
ctest "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
if [[ $rc -ne 0 ]]; then
  exit "$rc"
fi
skipped="$(grep -E '^[[:space:]]*[0-9]+ - .* \(Skipped\)$' "$log" || true)"
if [[ -n "$skipped" ]]; then
  count="$(printf '%s\n' "$skipped" | wc -l)"
  echo "ctest-strict: $count test(s) skipped; a skip here is usually a suite whose set-up failed:" >&2
  printf '%s\n' "$skipped" | head -20 >&2
  if [[ "${PODGATE_ALLOW_SKIPPED_TESTS:-0}" != "1" ]]; then
    echo "ctest-strict: failing (PODGATE_ALLOW_SKIPPED_TESTS=1 accepts skips)" >&2
    exit 1
  fi
fi
exit 0
