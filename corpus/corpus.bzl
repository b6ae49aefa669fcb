# SPDX-License-Identifier: GPL-2.0-only
"""Filegroups of the checked-in corpora: <target> (corpus/<target>/) and regressions_<target>
(corpus/regressions/<target>/), for zfuzz_target's replay test and seed zip."""

def corpus_filegroups(targets):
    for target in targets:
        native.filegroup(
            name = target,
            srcs = native.glob([target + "/*"]),
        )
        native.filegroup(
            name = "regressions_" + target,
            srcs = native.glob(["regressions/%s/*" % target]),
        )
