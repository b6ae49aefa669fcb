"""Targets of zsmalloc: the library //zpool:zsmalloc and its tests."""

load("//tools/bazel:zfuzz.bzl", "zfuzz_cc_library", "zfuzz_cc_test")

def zsmalloc_targets():
    zfuzz_cc_library(
        name = "zsmalloc",
        srcs = ["zsmalloc.cc"],
        hdrs = ["zsmalloc.h"],
        variant_deps = [
            ":misuse",
            "//zpool/kernel",
        ],
        visibility = ["//visibility:public"],
    )

    zfuzz_cc_test(
        name = "zsmalloc_test",
        size = "medium",
        srcs = ["zsmalloc_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zsmalloc"],
    )
