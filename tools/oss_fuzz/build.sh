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
# The upstream targets (the kernel's own mm/z*.c, docs/upstream.md) are built from the kernel
# tree ZFUZZ_LINUX_SOURCE=DIR names, else from /usr/src/linux-source-6.12.tar.xz when it is
# there; with neither they are skipped with a line saying so (named in ZFUZZ_TARGETS: an error).
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
# //zpool/upstream:upstream (the bridge) and //fuzz/api:upstream_subjects
UPSTREAM_SRCS=(
  zpool/upstream/bridge.cc
  zpool/upstream/movable.c
  fuzz/api/upstream_subjects.cc
)
# The kernel's files, compiled as C (//zpool/upstream's upstream_<unit>): unit and source; the
# probes include mm/<unit>.c themselves.
UPSTREAM_C=(
  "zsmalloc zpool/upstream/zsmalloc_probe.c"
  "zpool mm/zpool.c"
  "zbud mm/zbud.c"
  "z3fold zpool/upstream/z3fold_probe.c"
)
UPSTREAM_FILES=(mm/zsmalloc.c mm/zbud.c mm/z3fold.c mm/zpool.c include/linux/zsmalloc.h
                include/linux/zpool.h)
# name, max_len (options), libraries: "kernel" = //zpool/kernel only; "all" = the explorer's
# catalogue, the operation language, the allocators, zpool with its drivers, and the kernel layer;
# "upstream" = all of that and the kernel's own files with the bridge.
TARGETS=(
  "kernel_api_fuzz 4096 kernel"
  "zbud_api_fuzz 4096 all"
  "zsmalloc_api_fuzz 4096 all"
  "zpool_api_fuzz 4096 all"
  "zpool_lifecycle_fuzz 1024 all"
  "zpool_concurrent_fuzz 2048 all"
  "zpool_misuse_fuzz 1024 all"
  "upstream_api_fuzz 4096 upstream"
  "upstream_diff_fuzz 4096 upstream"
)

if [[ "${1:-}" == "--list" ]]; then
  for f in "${KERNEL_SRCS[@]}"; do echo "kernel $f"; done
  for f in "${ALLOCATOR_SRCS[@]}"; do echo "allocator $f"; done
  for f in "${DRIVER_SRCS[@]}"; do echo "driver $f"; done
  for f in "${OPLANG_SRCS[@]}"; do echo "oplang $f"; done
  for f in "${EXPLORE_SRCS[@]}"; do echo "explore $f"; done
  for f in "${UPSTREAM_SRCS[@]}"; do echo "upstream $f"; done
  for u in "${UPSTREAM_C[@]}"; do echo "upstream_c $u"; done
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
read -r -a CFLAGS_ARR <<< "${CFLAGS:-}"
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
if [[ -n "${WORK:-}" ]]; then
  BUILD_DIR="$WORK/zfuzz-build"
else
  BUILD_DIR="$(mktemp -d)"
  trap 'rm -rf "$BUILD_DIR"' EXIT
fi
mkdir -p "$BUILD_DIR" "$OUT"

# The kernel's files for the upstream targets: a tree, or Debian's tarball, or none.
LINUX=""
LINUX_WHY=""
if [[ -n "${ZFUZZ_LINUX_SOURCE:-}" ]]; then
  if [[ ! -f "$ZFUZZ_LINUX_SOURCE/Makefile" || ! -d "$ZFUZZ_LINUX_SOURCE/mm" ]]; then
    LINUX_WHY="ZFUZZ_LINUX_SOURCE=$ZFUZZ_LINUX_SOURCE is not a kernel tree (no Makefile or mm/)"
  else
    LINUX="$(cd "$ZFUZZ_LINUX_SOURCE" && pwd)"
  fi
elif [[ -f /usr/src/linux-source-6.12.tar.xz ]]; then
  LINUX="$BUILD_DIR/linux"
  mkdir -p "$LINUX"
  tar -xJf /usr/src/linux-source-6.12.tar.xz -C "$LINUX" --strip-components=1 \
    "${UPSTREAM_FILES[@]/#/linux-source-6.12/}"
else
  LINUX_WHY="no kernel tree (set ZFUZZ_LINUX_SOURCE=DIR, or install linux-source-6.12)"
fi
if [[ -n "$LINUX" ]]; then
  for f in "${UPSTREAM_FILES[@]}"; do
    if [[ ! -f "$LINUX/$f" ]]; then LINUX_WHY="$LINUX has no $f"; LINUX=""; break; fi
  done
fi
KEPT=()
for t in "${SELECTED[@]}"; do
  if [[ "${t##* }" == "upstream" && -z "$LINUX" ]]; then
    if [[ -n "${ZFUZZ_TARGETS:-}" ]]; then
      echo "build.sh: ${t%% *} needs the kernel's own files: $LINUX_WHY" >&2
      exit 2
    fi
    echo "build.sh: skipping ${t%% *}: $LINUX_WHY"
    continue
  fi
  KEPT+=("$t")
done
SELECTED=("${KEPT[@]}")
NEED_ALL=""
NEED_UPSTREAM=""
for t in "${SELECTED[@]}"; do
  if [[ "${t##* }" != "kernel" ]]; then NEED_ALL=1; fi
  if [[ "${t##* }" == "upstream" ]]; then NEED_UPSTREAM=1; fi
done

# ---- compile ---------------------------------------------------------------------------------
obj_of() {  # source path -> its object in $BUILD_DIR
  local name="${1%.cc}"
  name="${name%.c}"
  echo "$BUILD_DIR/${name//\//_}.o"
}

compile() {  # source (relative to the root)
  echo "build.sh: compiling $1"
  if [[ "$1" == *.c ]]; then
    "${CC:-clang}" "${CFLAGS_ARR[@]}" -std=gnu11 "-I$ROOT" -c "$ROOT/$1" -o "$(obj_of "$1")"
    return
  fi
  "$CXX" "${CXXFLAGS_ARR[@]}" "${ZFLAGS[@]}" -c "$ROOT/$1" -o "$(obj_of "$1")"
}

compile_upstream_c() {  # "unit source": a kernel file as //zpool/upstream compiles it
  local unit="${1%% *}" src="${1#* }" path
  path="$ROOT/$src"
  if [[ "$src" == mm/* ]]; then path="$LINUX/$src"; fi
  echo "build.sh: compiling $src (the kernel's $unit)"
  "${CC:-clang}" "${CFLAGS_ARR[@]}" -std=gnu11 -Wno-extern-initializer -Wno-unused-function \
    -include "$ROOT/zpool/upstream/renames.h" "-I$ROOT/zpool/upstream/include" "-I$LINUX" \
    "-I$LINUX/include" "-DKBUILD_MODNAME=\"$unit\"" "-DZFUZZ_UPSTREAM_UNIT=$unit" \
    -DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION -c "$path" -o "$BUILD_DIR/upstream_$unit.o"
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
if [[ -n "$NEED_UPSTREAM" ]]; then
  SOURCES+=("${UPSTREAM_SRCS[@]}")
  for u in "${UPSTREAM_C[@]}"; do
    if ! compile_upstream_c "$u"; then
      echo "build.sh: the kernel's ${u%% *} does not compile against the shims" >&2
      exit 1
    fi
  done
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
  if [[ "$libs" == "upstream" ]]; then
    # The files and the bridge call each other: objects, not archives.
    for src in "${UPSTREAM_SRCS[@]}"; do inputs+=("$(obj_of "$src")"); done
    for u in "${UPSTREAM_C[@]}"; do inputs+=("$BUILD_DIR/upstream_${u%% *}.o"); done
  fi
  if [[ "$libs" != "kernel" ]]; then
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
