#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# OSS-Fuzz / ClusterFuzzLite build of zfuzz's fuzz targets, without Bazel (the base-builder image
# has none): every source is compiled directly with $CXX.
#
# Honours OSS-Fuzz's contract: $CC $CXX $CFLAGS $CXXFLAGS (sanitizer and coverage flags),
# $LIB_FUZZING_ENGINE (linked into each target), $SRC (the project is $SRC/zfuzz, as
# .clusterfuzzlite/Dockerfile copies it), $OUT (where the package goes) and $WORK (scratch; a
# temporary directory when unset). For each target it writes to $OUT:
#   <target>                  the fuzz binary
#   <target>_seed_corpus.zip  corpus/<target>/, zipped like //tools/bazel:seed_zip does
#   <target>.dict             corpus/<target>.dict
#   <target>.options          [libfuzzer] max_len and dict, as zfuzz_target's genrule writes it
#
# The build matches a Bazel build of the same targets: the base variant's defines (none: 4 KiB
# pages, zsmalloc chain 8, no injected bug), -std=c++20, the repository root as include path,
# FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION everywhere (as --config=libfuzzer does) and
# ZFUZZ_SANITIZED=1 when a sanitizer is on (as the sanitizer configs do). The project's warning
# flags (-Werror) are left out: OSS-Fuzz's clang is not ours, and a new warning there must not
# break the fuzzing build.
#
# Extra knobs (not OSS-Fuzz's): ZFUZZ_TARGETS="a b" builds only those targets; ZFUZZ_JOBS=N
# parallel compilations (default: nproc); ZFUZZ_ROOT overrides $SRC/zfuzz.
# `build.sh --list` prints the source lists and the target table (the tools' tests check them
# against the BUILD files and the files on disk) and exits.
set -euo pipefail

# ---- what to build (kept in sync with the BUILD files by tools/zfuzzlib/tests/test_ossfuzz.py) --

# //zpool/kernel:kernel
KERNEL_SRCS=(
  zpool/kernel/cpu.cc
  zpool/kernel/explore.cc
  zpool/kernel/lock.cc
  zpool/kernel/lockdep.cc
  zpool/kernel/module.cc
  zpool/kernel/page_alloc.cc
  zpool/kernel/percpu_ref.cc
  zpool/kernel/region.cc
  zpool/kernel/sched.cc
  zpool/kernel/scheduler.cc
  zpool/kernel/slab.cc
  zpool/kernel/stack.cc
  zpool/kernel/warn.cc
)
# //zpool:misuse, //zpool:zbud, //zpool:zsmalloc, //zpool:zpool_core
ALLOCATOR_SRCS=(
  zpool/misuse.cc
  zpool/zbud.cc
  zpool/zsmalloc.cc
  zpool/zpool.cc
)
# //zpool:zpool (alwayslink: linked as an object, never from an archive)
DRIVER_SRCS=(
  zpool/zpool_drivers.cc
)
# //fuzz/api:oplang
OPLANG_SRCS=(
  fuzz/api/interleaving.cc
  fuzz/api/program.cc
  fuzz/api/subject.cc
  fuzz/api/user_driver.cc
)
# //fuzz/explore:scenario (the explorer's catalogue: zpool_concurrent_fuzz's scenario modes)
EXPLORE_SRCS=(
  fuzz/explore/catalogue.cc
  fuzz/explore/scenario.cc
)
# name, max_len (options), libraries: "kernel" = //zpool/kernel only; "all" = the explorer's
# catalogue, the operation language, the allocators, zpool with its drivers, and the kernel layer.
TARGETS=(
  "kernel_api_fuzz 4096 kernel"
  "zbud_api_fuzz 4096 all"
  "zsmalloc_api_fuzz 4096 all"
  "zpool_api_fuzz 4096 all"
  "zpool_lifecycle_fuzz 1024 all"
  "zpool_concurrent_fuzz 2048 all"
  "zpool_misuse_fuzz 1024 all"
)

if [[ "${1:-}" == "--list" ]]; then
  for f in "${KERNEL_SRCS[@]}"; do echo "kernel $f"; done
  for f in "${ALLOCATOR_SRCS[@]}"; do echo "allocator $f"; done
  for f in "${DRIVER_SRCS[@]}"; do echo "driver $f"; done
  for f in "${OPLANG_SRCS[@]}"; do echo "oplang $f"; done
  for f in "${EXPLORE_SRCS[@]}"; do echo "explore $f"; done
  for t in "${TARGETS[@]}"; do echo "target $t"; done
  exit 0
fi
if [[ $# -gt 0 ]]; then
  echo "build.sh: no arguments expected (got '$1'); see the header of $0" >&2
  exit 2
fi

# ---- OSS-Fuzz's environment ------------------------------------------------------------------
: "${CXX:?build.sh: CXX is not set (OSS-Fuzz sets it)}"
: "${OUT:?build.sh: OUT is not set (OSS-Fuzz sets it)}"
: "${LIB_FUZZING_ENGINE:?build.sh: LIB_FUZZING_ENGINE is not set (OSS-Fuzz sets it)}"
ROOT="${ZFUZZ_ROOT:-${SRC:?build.sh: SRC is not set (OSS-Fuzz sets it)}/zfuzz}"
if [[ ! -f "$ROOT/fuzz/BUILD" ]]; then
  echo "build.sh: $ROOT is not the zfuzz repository (no fuzz/BUILD)" >&2
  exit 1
fi
ROOT="$(cd "$ROOT" && pwd)"
JOBS="${ZFUZZ_JOBS:-$(nproc)}"
AR="${AR:-ar}"

# $CXXFLAGS and $LIB_FUZZING_ENGINE are space-separated flag lists by OSS-Fuzz's convention.
read -r -a CXXFLAGS_ARR <<< "${CXXFLAGS:-}"
read -r -a ENGINE_ARR <<< "$LIB_FUZZING_ENGINE"
ZFLAGS=(-std=c++20 "-I$ROOT" -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -pthread)
if [[ " ${CXXFLAGS:-} " == *" -fsanitize="* ]]; then
  ZFLAGS+=(-DZFUZZ_SANITIZED=1)
fi

# Targets to build: all, or ZFUZZ_TARGETS.
SELECTED=()
if [[ -n "${ZFUZZ_TARGETS:-}" ]]; then
  read -r -a WANTED <<< "$ZFUZZ_TARGETS"
  for want in "${WANTED[@]}"; do
    found=""
    for t in "${TARGETS[@]}"; do
      if [[ "${t%% *}" == "$want" ]]; then SELECTED+=("$t"); found=1; fi
    done
    if [[ -z "$found" ]]; then
      echo "build.sh: unknown target '$want' in ZFUZZ_TARGETS" >&2
      exit 2
    fi
  done
else
  SELECTED=("${TARGETS[@]}")
fi
NEED_ALL=""
for t in "${SELECTED[@]}"; do
  if [[ "${t##* }" == "all" ]]; then NEED_ALL=1; fi
done

if [[ -n "${WORK:-}" ]]; then
  BUILD_DIR="$WORK/zfuzz-build"
else
  BUILD_DIR="$(mktemp -d)"
  trap 'rm -rf "$BUILD_DIR"' EXIT
fi
mkdir -p "$BUILD_DIR" "$OUT"

# ---- compile ---------------------------------------------------------------------------------
obj_of() {  # source path -> its object in $BUILD_DIR
  local name="${1%.cc}"
  echo "$BUILD_DIR/${name//\//_}.o"
}

compile() {  # source (relative to the root)
  echo "build.sh: compiling $1"
  "$CXX" "${CXXFLAGS_ARR[@]}" "${ZFLAGS[@]}" -c "$ROOT/$1" -o "$(obj_of "$1")"
}

compile_all() {  # sources...: at most $JOBS at once; fails if any compilation failed
  local pids=() status=0 src pid
  for src in "$@"; do
    compile "$src" &
    pids+=("$!")
    if [[ "${#pids[@]}" -ge "$JOBS" ]]; then
      wait "${pids[0]}" || status=1
      pids=("${pids[@]:1}")
    fi
  done
  for pid in "${pids[@]}"; do
    wait "$pid" || status=1
  done
  return "$status"
}

archive() {  # archive sources...
  local lib="$1" objs=() src
  shift
  for src in "$@"; do objs+=("$(obj_of "$src")"); done
  rm -f "$lib"
  "$AR" rcs "$lib" "${objs[@]}"
}

SOURCES=("${KERNEL_SRCS[@]}")
if [[ -n "$NEED_ALL" ]]; then
  SOURCES+=("${ALLOCATOR_SRCS[@]}" "${DRIVER_SRCS[@]}" "${OPLANG_SRCS[@]}" "${EXPLORE_SRCS[@]}")
fi
for t in "${SELECTED[@]}"; do
  SOURCES+=("fuzz/${t%% *}.cc")
done
if ! compile_all "${SOURCES[@]}"; then
  echo "build.sh: compilation failed" >&2
  exit 1
fi

archive "$BUILD_DIR/libzfuzz_kernel.a" "${KERNEL_SRCS[@]}"
if [[ -n "$NEED_ALL" ]]; then
  archive "$BUILD_DIR/libzfuzz_allocators.a" "${ALLOCATOR_SRCS[@]}"
  archive "$BUILD_DIR/libzfuzz_oplang.a" "${OPLANG_SRCS[@]}"
  archive "$BUILD_DIR/libzfuzz_explore.a" "${EXPLORE_SRCS[@]}"
fi

# ---- link and package ------------------------------------------------------------------------
shopt -s nullglob
for t in "${SELECTED[@]}"; do
  read -r name max_len libs <<< "$t"
  inputs=("$(obj_of "fuzz/$name.cc")")
  if [[ "$libs" == "all" ]]; then
    for src in "${DRIVER_SRCS[@]}"; do inputs+=("$(obj_of "$src")"); done
    inputs+=("$BUILD_DIR/libzfuzz_explore.a" "$BUILD_DIR/libzfuzz_oplang.a"
             "$BUILD_DIR/libzfuzz_allocators.a")
  fi
  inputs+=("$BUILD_DIR/libzfuzz_kernel.a")
  echo "build.sh: linking $OUT/$name"
  "$CXX" "${CXXFLAGS_ARR[@]}" "${ZFLAGS[@]}" "${inputs[@]}" "${ENGINE_ARR[@]}" -o "$OUT/$name"

  seeds=("$ROOT/corpus/$name"/*)
  if [[ "${#seeds[@]}" -eq 0 ]]; then
    echo "build.sh: corpus/$name/ is empty or missing" >&2
    exit 1
  fi
  python3 "$ROOT/tools/bazel/seed_zip.py" "$OUT/${name}_seed_corpus.zip" "${seeds[@]}"
  cp "$ROOT/corpus/$name.dict" "$OUT/$name.dict"
  printf '[libfuzzer]\nmax_len = %s\ndict = %s\n' "$max_len" "$name.dict" > "$OUT/$name.options"
done
echo "build.sh: ${#SELECTED[@]} target(s) in $OUT"
