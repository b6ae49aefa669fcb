#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-only
# seed_zip_test.sh SEED_ZIP: the py_binary tool runs with no `python` (nor anything else) on
# PATH, as on a bare Debian 12, and writes a flat, reproducible zip of the files it is given.
# With Bazel's default stub (`#!/usr/bin/env python`) the first step fails.
set -u
tool=$1
work=${TEST_TMPDIR:-$(mktemp -d)}
mkdir -p "$work/a" "$work/b"
printf 'first' >"$work/a/1111"
printf 'second' >"$work/b/2222"

fail() { echo "FAIL: $*" >&2; exit 1; }

line1=$(head -n1 "$tool")
case "$line1" in
  *"env python"|*"env python "*) fail "the stub starts with '$line1': needs a python command" ;;
esac
env -i PATH=/nonexistent "$tool" "$work/out.zip" "$work/b/2222" "$work/a/1111" \
  || fail "$tool did not run with an empty PATH (its first line: $line1)"
env -i PATH=/nonexistent "$tool" "$work/again.zip" "$work/a/1111" "$work/b/2222" \
  || fail "second run"
cmp -s "$work/out.zip" "$work/again.zip" || fail "the zip depends on the order of its inputs"
# The zip lists its members by name in the central directory; both must be there, flat.
for name in 1111 2222; do
  grep -qa "$name" "$work/out.zip" || fail "member $name missing"
done
grep -qa "a/1111" "$work/out.zip" && fail "member stored with its directory"
env -i PATH=/nonexistent "$tool" "$work/dup.zip" "$work/a/1111" "$work/a/1111" 2>"$work/err" \
  && fail "a duplicate base name was accepted"
grep -q "duplicate base name 1111" "$work/err" || fail "duplicate: no clear error"
echo "PASS: seed_zip runs without a python command and zips flat and reproducibly"
