"""Targets of zpool: the library //zpool:zpool (with the built-in drivers) and its tests."""

load("//tools/bazel:zfuzz.bzl", "zfuzz_cc_library", "zfuzz_cc_test")

def zpool_targets():
    zfuzz_cc_library(
        name = "zpool",
        srcs = [
            "zpool.cc",
            "zpool_drivers.cc",
        ],
        hdrs = ["zpool.h"],
        variant_deps = [
            ":misuse",
            ":zbud",
            ":zsmalloc",
            "//zpool/kernel",
        ],
        alwayslink = True,
        visibility = ["//visibility:public"],
    )

    zfuzz_cc_test(
        name = "zpool_test",
        size = "medium",
        srcs = ["zpool_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zpool"],
    )
