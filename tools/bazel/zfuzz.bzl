# SPDX-License-Identifier: GPL-2.0-only
"""Shared C++ rules for zfuzz: one set of warnings, and the page-size / chain-size variants.

Every library and test is built in three variants so that `bazel test --config=<sanitizer> //...`
covers the build-time choices the contract promises, in every sanitizer:
  <name>        PAGE_SHIFT and the zsmalloc chain size from --define (defaults 12 and 8)
  <name>_ps16   PAGE_SHIFT 16 (64 KiB pages)
  <name>_cs4    zsmalloc chain size 4 (ZS_MAX_PAGES_PER_ZSPAGE)
A library that does not depend on a dimension lists the variants it has (`variants`); the others
become aliases of the base target, so dependents can always name `<dep><suffix>`.
"""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")

# Warnings are errors in our own code. -Wthread-safety checks the lock annotations of
# zpool/kernel/thread_annotations.h across the whole tree; -Wformat=2 refuses non-literal format
# strings (the 2014 request_module(type) lesson).
ZFUZZ_COPTS = [
    # AFL++ builds use clang 14, which lacks some of clang 19's warning names.
    "-Wno-unknown-warning-option",
    "-Wall",
    "-Wextra",
    "-Werror",
    "-Wthread-safety",
    "-Wthread-safety-beta",
    "-Wformat=2",
    "-Wshadow",
    "-Wimplicit-fallthrough",
    "-Wno-unused-parameter",
    "-Wno-missing-field-initializers",
    "-Wno-gnu-statement-expression",
    "-Wno-gnu-statement-expression-from-macro-expansion",
]

_PAGE_SHIFT_SELECT = select({
    "//tools/bazel:page_shift_14": ["ZPOOL_PAGE_SHIFT=14"],
    "//tools/bazel:page_shift_16": ["ZPOOL_PAGE_SHIFT=16"],
    "//conditions:default": [],
})

_CHAIN_SELECT = select({
    "//tools/bazel:zs_chain_4": ["ZS_CONFIG_CHAIN_SIZE=4"],
    "//tools/bazel:zs_chain_16": ["ZS_CONFIG_CHAIN_SIZE=16"],
    "//conditions:default": [],
})

# --define=zfuzz_bug=<name> compiles one injected bug into the allocators (zpool/inject.h).
ZFUZZ_BUG_DEFINES = select({
    "//tools/bazel:bug_class_index": ["ZFUZZ_BUG_CLASS_INDEX=1"],
    "//tools/bazel:bug_span_copyback": ["ZFUZZ_BUG_SPAN_COPYBACK=1"],
    "//tools/bazel:bug_compact_unlocked": ["ZFUZZ_BUG_COMPACT_UNLOCKED=1"],
    "//tools/bazel:bug_create_refcount": ["ZFUZZ_BUG_CREATE_REFCOUNT=1"],
    "//tools/bazel:bug_under_reclaim": ["ZFUZZ_BUG_UNDER_RECLAIM=1"],
    "//tools/bazel:bug_free_lock_gap": ["ZFUZZ_BUG_FREE_LOCK_GAP=1"],
    "//tools/bazel:bug_map_lock_gap": ["ZFUZZ_BUG_MAP_LOCK_GAP=1"],
    "//tools/bazel:bug_driver_ref_gap": ["ZFUZZ_BUG_DRIVER_REF_GAP=1"],
    "//tools/bazel:bug_reclaim_recheck": ["ZFUZZ_BUG_RECLAIM_RECHECK=1"],
    "//tools/bazel:bug_fullness_ratio": ["ZFUZZ_BUG_FULLNESS_RATIO=1"],
    "//tools/bazel:bug_first_object": ["ZFUZZ_BUG_FIRST_OBJECT=1"],
    "//tools/bazel:bug_compact_dst_order": ["ZFUZZ_BUG_COMPACT_DST_ORDER=1"],
    "//conditions:default": [],
})

# suffix -> (defines of that variant). Each variant fixes one dimension and keeps the other
# selectable from the command line.
VARIANTS = {
    "": _PAGE_SHIFT_SELECT + _CHAIN_SELECT,
    "_ps16": ["ZPOOL_PAGE_SHIFT=16"] + _CHAIN_SELECT,
    "_cs4": _PAGE_SHIFT_SELECT + ["ZS_CONFIG_CHAIN_SIZE=4"],
}

ALL_VARIANTS = ["ps16", "cs4"]

def _suffixes(variants):
    for v in variants:
        if v not in ALL_VARIANTS:
            fail("unknown variant %r (known: %r)" % (v, ALL_VARIANTS))
    return [""] + ["_" + v for v in variants]

def _map_deps(deps, suffix):
    # "//pkg/name" is short for "//pkg/name:name"; the suffix goes on the target name.
    return [(d if ":" in d else d + ":" + d.split("/")[-1]) + suffix for d in deps]

def zfuzz_cc_library(
        name,
        variant_deps = [],
        deps = [],
        copts = [],
        defines = [],
        variants = ALL_VARIANTS,
        visibility = None,
        **kwargs):
    """A cc_library built in each variant. `variant_deps` are our own libraries (same variant)."""
    for suffix in [""] + ["_" + v for v in ALL_VARIANTS]:
        if suffix in _suffixes(variants):
            cc_library(
                name = name + suffix,
                deps = deps + _map_deps(variant_deps, suffix),
                copts = ZFUZZ_COPTS + copts,
                defines = VARIANTS[suffix] + defines,
                local_defines = ZFUZZ_BUG_DEFINES,
                visibility = visibility,
                **kwargs
            )
        else:
            native.alias(
                name = name + suffix,
                actual = ":" + name,
                visibility = visibility,
            )

def zfuzz_cc_test(
        name,
        variant_deps = [],
        deps = [],
        copts = [],
        variants = ALL_VARIANTS,
        **kwargs):
    """A cc_test run in each listed variant (`<name>`, `<name>_ps16`, `<name>_cs4`).

    The variants are tagged `zfuzz_variant`: `tools/zfuzz test` runs them under asan and ubsan
    only by default (--variants), to keep the whole suite's cold time down."""
    tags = kwargs.pop("tags", [])
    for suffix in _suffixes(variants):
        cc_test(
            name = name + suffix,
            deps = deps + _map_deps(variant_deps, suffix),
            copts = ZFUZZ_COPTS + copts,
            tags = tags + (["zfuzz_variant"] if suffix else []),
            **kwargs
        )

def zfuzz_cc_binary(name, variant_deps = [], deps = [], copts = [], **kwargs):
    """A cc_binary of the base variant with the project's warnings."""
    cc_binary(
        name = name,
        deps = deps + variant_deps,
        copts = ZFUZZ_COPTS + copts,
        **kwargs
    )
