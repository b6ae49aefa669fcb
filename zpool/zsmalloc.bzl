# SPDX-License-Identifier: GPL-2.0-only
"""Targets of zsmalloc: the library //zpool:zsmalloc and its tests."""

load("//tools/bazel:zfuzz.bzl", "zfuzz_cc_library", "zfuzz_cc_test")

def zsmalloc_targets():
    zfuzz_cc_library(
        name = "zsmalloc",
        srcs = ["zsmalloc.cc"],
        hdrs = [
            "zsmalloc.h",
            "zsmalloc_pinned.h",
        ],
        variant_deps = [
            ":misuse",
            "//zpool/kernel",
        ],
        visibility = ["//visibility:public"],
    )

    # The class table, accounting, mapping, compaction, concurrency, fault injection.
    zfuzz_cc_test(
        name = "zsmalloc_test",
        size = "medium",
        srcs = ["zsmalloc_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [
            ":misuse",
            ":zsmalloc",
            "//zpool/kernel",
        ],
    )

    # The hardening catalogue (docs/hardening.md) and the sanitizer-aware memory.
    zfuzz_cc_test(
        name = "zsmalloc_hardening_test",
        size = "medium",
        srcs = ["zsmalloc_hardening_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [
            ":misuse",
            ":zsmalloc",
            "//zpool/kernel",
        ],
    )
