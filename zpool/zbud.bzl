# SPDX-License-Identifier: GPL-2.0-only
"""Targets of zbud: the library //zpool:zbud and its tests (each also as _ps16: 64 KiB pages)."""

load("//tools/bazel:zfuzz.bzl", "zfuzz_cc_library", "zfuzz_cc_test")

def zbud_targets():
    zfuzz_cc_library(
        name = "zbud",
        srcs = ["zbud.cc"],
        hdrs = [
            "zbud.h",
            "zbud_pinned.h",
        ],
        variant_deps = [
            ":misuse",
            "//zpool/kernel:kernel",
        ],
        variants = ["ps16"],
        visibility = ["//visibility:public"],
    )

    # The contract (issue 4): sizes, placement, LRU and reclaim, contents, fault injection.
    zfuzz_cc_test(
        name = "zbud_test",
        size = "small",
        srcs = ["zbud_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zbud", ":misuse", "//zpool/kernel:kernel"],
        variants = ["ps16"],
    )

    # The hardening catalogue (issue 7) as it applies to zbud, and the sanitizer-aware memory.
    zfuzz_cc_test(
        name = "zbud_hardening_test",
        size = "small",
        srcs = ["zbud_hardening_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zbud", ":misuse", "//zpool/kernel:kernel"],
        variants = ["ps16"],
    )

    # Threads on different virtual CPUs: allocating, mapping, freeing and reclaiming at once.
    zfuzz_cc_test(
        name = "zbud_threads_test",
        size = "small",
        srcs = ["zbud_threads_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zbud", ":misuse", "//zpool/kernel:kernel"],
        variants = ["ps16"],
    )
