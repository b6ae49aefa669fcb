"""Targets of zbud: the library //zpool:zbud and its tests."""

load("//tools/bazel:zfuzz.bzl", "zfuzz_cc_library", "zfuzz_cc_test")

def zbud_targets():
    zfuzz_cc_library(
        name = "zbud",
        srcs = ["zbud.cc"],
        hdrs = ["zbud.h"],
        variant_deps = [
            ":misuse",
            "//zpool/kernel",
        ],
        variants = ["ps16"],
        visibility = ["//visibility:public"],
    )

    zfuzz_cc_test(
        name = "zbud_test",
        size = "small",
        srcs = ["zbud_test.cc"],
        deps = ["@com_google_googletest//:gtest_main"],
        variant_deps = [":zbud"],
        variants = ["ps16"],
    )
