#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# expect_report.sh BINARY PATTERN...
#
# Runs BINARY (a sanitizer canary) and passes only if
#   - it exited non-zero (the sanitizer halted it), and
#   - its combined stdout+stderr contains every PATTERN (fixed strings, e.g.
#     "ERROR: AddressSanitizer: heap-buffer-overflow").
# On failure it prints what it expected and what it saw.
set -u

if [[ $# -lt 2 ]]; then
  echo "usage: $0 BINARY PATTERN..." >&2
  exit 2
fi

binary=$1
shift

if [[ ! -x "$binary" ]]; then
  echo "FAIL: canary binary '$binary' not found or not executable (cwd: $PWD)" >&2
  exit 2
fi

out_dir=${TEST_TMPDIR:-$(mktemp -d)}
log="$out_dir/$(basename "$binary").log"

"$binary" >"$log" 2>&1
status=$?

missing=()
for pattern in "$@"; do
  if ! grep -qF -e "$pattern" "$log"; then
    missing+=("$pattern")
  fi
done

if [[ $status -ne 0 && ${#missing[@]} -eq 0 ]]; then
  echo "PASS: $binary exited with status $status and reported:"
  for pattern in "$@"; do
    echo "  $(grep -m1 -F -e "$pattern" "$log")"
  done
  exit 0
fi

echo "FAIL: sanitizer canary $binary was not caught as expected."
echo "expected: non-zero exit status, and output containing:"
for pattern in "$@"; do
  echo "  '$pattern'"
done
echo "saw: exit status $status"
if [[ $status -eq 0 ]]; then
  echo "  (the bug ran to completion: the sanitizer is not in this build, or it did not" \
       "instrument the canary's library)"
fi
for pattern in "${missing[@]}"; do
  echo "  missing: '$pattern'"
done
echo "----- output of $binary -----"
cat "$log"
echo "----- end of output -----"
exit 1
