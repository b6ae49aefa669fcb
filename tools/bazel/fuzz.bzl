# SPDX-License-Identifier: GPL-2.0-only
"""zfuzz_target: one fuzz harness, every engine, its corpus replayed as a test.

In the manner of rules_fuzzing. For `zfuzz_target(name = "x_fuzz", srcs = [...], deps = [...])`:
  x_fuzz                 cc_test: replays corpus/x_fuzz/ and corpus/regressions/x_fuzz/ with our
                         replay engine (part of //..., runs in every sanitizer config)
  x_fuzz_replay          the same binary, to run by hand on any file or directory
  x_fuzz_libfuzzer       the libFuzzer binary      (only under --config=libfuzzer / *-libfuzzer)
  x_fuzz_afl             the AFL++ binary          (only under --config=afl / *-afl)
  x_fuzz_afl_cmplog      its CmpLog twin           (only under --config=afl-cmplog)
  x_fuzz_seed_corpus.zip, x_fuzz.dict, x_fuzz.options, and x_fuzz_oss_fuzz (all four plus the
                         engine binary): the package OSS-Fuzz expects
Engine binaries are skipped (incompatible) under other configs, so `bazel build //...` builds
what the current config can build. The corpus lives in //corpus (filegroups named after the
target and regressions_<target>).
"""

load("@rules_cc//cc:defs.bzl", "cc_binary", "cc_library", "cc_test")
load("//tools/bazel:zfuzz.bzl", "ZFUZZ_COPTS")
load("@linux_source//:status.bzl", "UPSTREAM_AVAILABLE")

_INCOMPATIBLE = ["@platforms//:incompatible"]

def _only_with(settings):
    conditions = {s: [] for s in settings}
    conditions["//conditions:default"] = _INCOMPATIBLE
    return select(conditions)

def zfuzz_target(
        name,
        srcs,
        deps = [],
        dict = None,
        options = {},
        min_inputs = 1,
        size = "medium",
        tags = [],
        upstream = False,
        **kwargs):
    """A fuzz target for every engine plus its corpus-replay test (see the file comment).

    upstream = True: the target links the kernel's own files (//zpool/upstream); without
    @linux_source its rules are incompatible, so `bazel test //...` skips them."""
    harness = name + "_harness"
    if upstream and not UPSTREAM_AVAILABLE:
        kwargs["target_compatible_with"] = _INCOMPATIBLE
    cc_library(
        name = harness,
        srcs = srcs,
        deps = deps + ["//tools/bazel:fuzzed_data_provider"],
        copts = ZFUZZ_COPTS,
        local_defines = ["FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION"],
        alwayslink = True,
        **kwargs
    )
    corpus = "//corpus:" + name
    regressions = "//corpus:regressions_" + name
    cc_test(
        name = name,
        size = size,
        deps = [harness, "//fuzz/engine:replay_main"],
        data = [corpus, regressions],
        args = [
            "-min_inputs=%d" % min_inputs,
            "-skip_missing=1",
            "corpus/" + name,
            "corpus/regressions/" + name,
        ],
        tags = tags,
    )
    cc_binary(
        name = name + "_replay",
        deps = [harness, "//fuzz/engine:replay_main"],
        tags = tags,
    )
    cc_binary(
        name = name + "_libfuzzer",
        deps = [harness],
        linkopts = ["-fsanitize=fuzzer"],
        target_compatible_with = _only_with(["//tools/bazel:engine_libfuzzer"]),
        tags = tags,
    )
    cc_binary(
        name = name + "_afl",
        deps = [harness],
        linkopts = ["/usr/lib/afl/libAFLDriver.a"],
        target_compatible_with = _only_with(["//tools/bazel:engine_afl"]),
        tags = tags,
    )
    cc_binary(
        name = name + "_afl_cmplog",
        deps = [harness],
        linkopts = ["/usr/lib/afl/libAFLDriver.a"],
        target_compatible_with = _only_with(["//tools/bazel:engine_afl_cmplog"]),
        tags = tags,
    )

    # The OSS-Fuzz package: seed zip, dictionary, options, and the libFuzzer binary.
    native.genrule(
        name = name + "_seed_corpus",
        srcs = [corpus],
        outs = [name + "_seed_corpus.zip"],
        cmd = "$(location //tools/bazel:seed_zip) $@ $(SRCS)",
        tools = ["//tools/bazel:seed_zip"],
    )
    dict_out = name + ".dict"
    if dict:
        native.genrule(
            name = name + "_dict",
            srcs = [dict],
            outs = [dict_out],
            cmd = "cp $< $@",
        )
    options_lines = ["[libfuzzer]"] + ["%s = %s" % (k, options[k]) for k in sorted(options)]
    if dict:
        options_lines.append("dict = %s" % dict_out)
    native.genrule(
        name = name + "_options",
        outs = [name + ".options"],
        cmd = "printf '%s\\n' > $@" % "\\n".join(options_lines),
    )
    native.filegroup(
        name = name + "_oss_fuzz",
        srcs = [
            name + "_libfuzzer",
            name + "_seed_corpus.zip",
            name + ".options",
        ] + ([dict_out] if dict else []),
        tags = tags,
    )
