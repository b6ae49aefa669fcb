# SPDX-License-Identifier: GPL-2.0-only
"""Targets of zpool: the library //zpool:zpool (with the built-in drivers) and its tests."""

load("//tools/bazel:zfuzz.bzl", "zfuzz_cc_library", "zfuzz_cc_test")

def zpool_targets():
    # The API, registry, lifecycle checks: everything but the built-in drivers. Package-private:
    # outside code links //zpool:zpool. zpool_lifecycle_test links it alone (with a driver list of
    # its own), so the lifecycle rules are tested against a driver that checks nothing itself.
    zfuzz_cc_library(
        name = "zpool_core",
        srcs = ["zpool.cc"],
        hdrs = ["zpool.h"],
        variant_deps = [
            ":misuse",
            "//zpool/kernel:kernel",
        ],
        variants = ["ps16"],
        visibility = ["//visibility:private"],
    )

    # alwayslink: zpool.cc finds the built-in drivers through zpool_drivers.cc, which nothing
    # else references.
    zfuzz_cc_library(
        name = "zpool",
        srcs = ["zpool_drivers.cc"],
        hdrs = ["zpool.h"],
        variant_deps = [
            ":misuse",
            ":zbud",
            ":zpool_core",
            ":zsmalloc",
            "//zpool/kernel:kernel",
        ],
        alwayslink = True,
        visibility = ["//visibility:public"],
    )

    # Every backend through zpool (one suite, parameterised by type), evict routing, the
    # registry with a driver wrapping zbud, concurrency, the zpool-level hardening catalogue.
    zfuzz_cc_test(
        name = "zpool_test",
        size = "medium",
        srcs = ["zpool_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zpool"],
    )

    # Registry and lifecycle rules against a mock driver that counts its calls (so "checked
    # before the backend" is observable), without the built-in drivers.
    zfuzz_cc_test(
        name = "zpool_lifecycle_test",
        size = "medium",
        srcs = ["zpool_lifecycle_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zpool_core"],
        variants = ["ps16"],
    )
