#!/usr/bin/env bash
# Fails when a C++ line changed since a base commit is not clang-formatted (.clang-format: Google
# style, 100 columns). Only the changed lines of each changed file are checked, with
# `clang-format --dry-run -Werror --lines=...`, so code that predates the check does not fail a
# change that merely touches its file; new files are therefore checked whole.
#
#   tools/check-format.sh [base]
#
# The base, when not given (or PODGATE_FORMAT_BASE):
#   - on a branch: its merge-base with main (origin/main, else main): everything the branch adds;
#   - on main itself (CI checks a clean clone of main): HEAD's first parent, i.e. the commit
#     landed before this one (for a merge commit, everything the merge brought in).
# A shallow clone without the base is deepened by one commit from origin when it can be; without
# any base the check fails and says so (clone with history, or pass a base).
# The working tree is compared with the base, so uncommitted edits are checked too.
# Fix what it reports with `clang-format -i FILE` (or `git clang-format BASE`).
set -euo pipefail
cd "$(dirname "$0")/.."

clang_format="${CLANG_FORMAT:-clang-format}"
if ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "check-format: $clang_format not found (tools/install-deps.sh installs clang-format)" >&2
  exit 2
fi

has_commit() { git rev-parse --verify --quiet "$1^{commit}" >/dev/null; }

base="${1:-${PODGATE_FORMAT_BASE:-}}"
if [ -z "$base" ]; then
  main=""
  for ref in origin/main main; do
    if has_commit "$ref"; then
      main="$ref"
      break
    fi
  done
  if [ -n "$main" ] && [ "$(git rev-parse "$main")" != "$(git rev-parse HEAD)" ] &&
     merge_base="$(git merge-base HEAD "$main" 2>/dev/null)" &&
     [ "$merge_base" != "$(git rev-parse HEAD)" ]; then
    base="$merge_base"
  else
    if ! has_commit HEAD^1 && [ -f "$(git rev-parse --git-dir)/shallow" ]; then
      git fetch --quiet --deepen=1 origin 2>/dev/null || true
    fi
    base="HEAD^1"
  fi
fi
if ! has_commit "$base"; then
  echo "check-format: no base commit '$base' (a shallow clone? clone with history, or pass a" \
       "base: tools/check-format.sh <commit>)" >&2
  exit 2
fi

mapfile -t files < <(git diff --name-only --diff-filter=ACMR "$base" -- \
  '*.cc' '*.h' '*.cpp' '*.hpp' ':!**/node_modules/**')
status=0
checked=0
for file in "${files[@]}"; do
  [ -f "$file" ] || continue
  # The new side of every hunk: "@@ -a,b +c,d @@" covers lines c..c+d-1 (d = 0: a deletion).
  mapfile -t ranges < <(git diff -U0 "$base" -- "$file" |
    sed -n 's/^@@ -[0-9,]* +\([0-9]*\)\(,\([0-9]*\)\)\{0,1\} @@.*/\1 \3/p' |
    awk '{ n = ($2 == "") ? 1 : $2; if (n > 0) printf "--lines=%d:%d\n", $1, $1 + n - 1 }')
  [ "${#ranges[@]}" -gt 0 ] || continue
  checked=$((checked + 1))
  if ! "$clang_format" --dry-run -Werror "${ranges[@]}" "$file"; then
    status=1
  fi
done
if [ "$status" -ne 0 ]; then
  echo "check-format: changed lines are not clang-formatted (base $(git rev-parse --short "$base"));" \
       "run clang-format -i on the files above, or git clang-format $(git rev-parse --short "$base")" >&2
  exit 1
fi
echo "check-format: $checked changed C++ file(s) since $(git rev-parse --short "$base") are formatted"
