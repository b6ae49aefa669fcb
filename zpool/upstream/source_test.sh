#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# source_test.sh SOURCE.txt AVAILABLE: what @linux_source holds. Passes with the kernel version,
# its origin and the files' sha256; fails with the one-line reason when the upstream files are
# unavailable (no kernel source installed, a ZFUZZ_LINUX_SOURCE that is not a kernel tree, or a
# tree whose files need kernel APIs the shims lack).
set -u
source_txt=$1
available=$2
if [[ ! -f "$source_txt" ]]; then
  echo "FAIL: $source_txt missing" >&2
  exit 1
fi
status=$(head -n1 "$source_txt")
if [[ "$available" != "1" ]]; then
  echo "FAIL: the kernel's allocator files are unavailable: $status"
  echo "(the other targets are unaffected; //zpool/upstream's are skipped)"
  exit 1
fi
files=$(tail -n +2 "$source_txt" | grep -c . || true)
if [[ "$files" -ne 6 ]]; then
  echo "FAIL: $source_txt lists $files sha256 sums, expected 6"
  cat "$source_txt"
  exit 1
fi
echo "PASS: $status"
tail -n +2 "$source_txt"
