# SPDX-License-Identifier: GPL-2.0-only
"""Tests of the OSS-Fuzz package: tools/oss_fuzz/build.sh's source lists and target table against
the BUILD files and the files on disk, the .clusterfuzzlite files, `oss-fuzz`'s pure parts
(OSS-Fuzz's variables, options, output parsing, the out directory), and one real build.sh run of
one target with ASan (about 10 s; skipped without clang-19 or with ZFUZZ_SKIP_SLOW_TESTS=1)."""
import argparse
import contextlib
import glob
import io
import os
import re
import shutil
import subprocess
import tempfile
import unittest
import zipfile

from zfuzzlib import cli, common, coverage, ossfuzz
from zfuzzlib import targets as zf_targets

ROOT = common.REPO_ROOT
BUILD_SH = ossfuzz.BUILD_SH


def read(*parts):
    with open(os.path.join(ROOT, *parts)) as f:
        return f.read()


def build_sh_list():
    """{group: [...]} from `build.sh --list` (the script's own arrays)."""
    proc = subprocess.run(["bash", BUILD_SH, "--list"], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env={"PATH": os.environ["PATH"]})
    if proc.returncode != 0:
        raise AssertionError("build.sh --list failed: %s" % proc.stderr)
    groups = {}
    for line in proc.stdout.splitlines():
        group, _, rest = line.partition(" ")
        groups.setdefault(group, []).append(rest)
    return groups


def library_srcs(text, function, name):
    """The .cc srcs of the `function(name = "<name>", ...)` call in a BUILD/.bzl text."""
    for block in zf_targets._call_blocks(re.sub(r"(?m)^\s+", "", text), function):
        if re.search(r'\bname\s*=\s*"%s"' % re.escape(name), block):
            return [s for s in zf_targets._string_list(block, "srcs") if s.endswith(".cc")]
    raise AssertionError("no %s(name = %r)" % (function, name))


class SourceListTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lists = build_sh_list()

    def test_every_listed_source_exists_once(self):
        listed = [f for g in ("kernel", "allocator", "driver", "oplang", "explore", "upstream")
                  for f in self.lists[g]]
        listed += [u.split()[1] for u in self.lists["upstream_c"]
                   if not u.split()[1].startswith("mm/")]
        self.assertEqual(len(listed), len(set(listed)))
        for f in listed:
            self.assertTrue(os.path.isfile(os.path.join(ROOT, f)), f)

    def test_every_library_source_on_disk_is_listed(self):
        listed = {f for g in ("kernel", "allocator", "driver", "oplang", "explore", "upstream")
                  for f in self.lists[g]}
        on_disk = set()
        for pattern in ("zpool/kernel/*.cc", "zpool/*.cc", "fuzz/api/*.cc", "fuzz/explore/*.cc",
                        "zpool/upstream/*.cc", "zpool/upstream/*.c"):
            for path in glob.glob(os.path.join(ROOT, pattern)):
                rel = os.path.relpath(path, ROOT)
                if not rel.endswith(("_test.cc", "_probe.c")):
                    on_disk.add(rel)
        # fuzz/api/seeds.cc is //fuzz/api:generate_seeds and fuzz/explore/explore_main.cc
        # //fuzz/explore:explore: tools, not libraries.
        self.assertEqual(on_disk - {"fuzz/api/seeds.cc", "fuzz/explore/explore_main.cc"}, listed)

    def test_lists_match_the_build_files(self):
        kernel = library_srcs(read("zpool", "kernel", "BUILD"), "zfuzz_cc_library", "kernel")
        self.assertEqual(sorted("zpool/kernel/" + s for s in kernel), sorted(self.lists["kernel"]))
        allocators = (library_srcs(read("zpool", "BUILD"), "zfuzz_cc_library", "misuse")
                      + library_srcs(read("zpool", "zbud.bzl"), "zfuzz_cc_library", "zbud")
                      + library_srcs(read("zpool", "zsmalloc.bzl"), "zfuzz_cc_library",
                                     "zsmalloc")
                      + library_srcs(read("zpool", "zpool.bzl"), "zfuzz_cc_library",
                                     "zpool_core"))
        self.assertEqual(sorted("zpool/" + s for s in allocators),
                         sorted(self.lists["allocator"]))
        drivers = library_srcs(read("zpool", "zpool.bzl"), "zfuzz_cc_library", "zpool")
        self.assertEqual(["zpool/" + s for s in drivers], self.lists["driver"])
        self.assertIn("alwayslink = True", read("zpool", "zpool.bzl"))
        oplang = library_srcs(read("fuzz", "api", "BUILD"), "cc_library", "oplang")
        self.assertEqual(sorted("fuzz/api/" + s for s in oplang), sorted(self.lists["oplang"]))
        explore = library_srcs(read("fuzz", "explore", "BUILD"), "cc_library", "scenario")
        self.assertEqual(sorted("fuzz/explore/" + s for s in explore),
                         sorted(self.lists["explore"]))
        subjects = library_srcs(read("fuzz", "api", "BUILD"), "cc_library", "upstream_subjects")
        upstream_build = read("zpool", "upstream", "BUILD")
        bridge = re.search(r'name = "upstream" \+ suffix,\s*srcs = \[([^\]]*)\]',
                           upstream_build).group(1)
        bridge = re.findall(r'"([^"]+)"', bridge)
        self.assertEqual(sorted(["zpool/upstream/" + s for s in bridge] +
                                ["fuzz/api/" + s for s in subjects]),
                         sorted(self.lists["upstream"]))
        # The C units: the probed ones through their probe, the others as the kernel's file.
        probed = re.search(r"PROBED = \[([^\]]*)\]", upstream_build).group(1)
        for unit, src in (u.split() for u in self.lists["upstream_c"]):
            if '"%s"' % unit in probed:
                self.assertEqual(src, "zpool/upstream/%s_probe.c" % unit)
            else:
                self.assertEqual(src, "mm/%s.c" % unit)

    def test_no_defines_to_replicate(self):
        # build.sh compiles the base variant with no -D of its own besides OSS-Fuzz's: that holds
        # while the libraries' BUILD files add none (zfuzz.bzl's variants select [] by default).
        for parts in (("zpool", "BUILD"), ("zpool", "zbud.bzl"), ("zpool", "zsmalloc.bzl"),
                      ("zpool", "zpool.bzl"), ("zpool", "kernel", "BUILD"),
                      ("fuzz", "api", "BUILD"), ("fuzz", "BUILD")):
            text = read(*parts)
            if parts == ("fuzz", "api", "BUILD"):  # the upstream seed generator: a tool
                text = text[:text.index("generate_upstream_seeds")]
            self.assertNotRegex(text, r"\b(local_)?defines\s*=", parts)
            self.assertNotIn('"-D', text, parts)
        bzl = read("tools", "bazel", "zfuzz.bzl")
        self.assertEqual(bzl.count('"//conditions:default": [],'), 3)

    def test_target_table_matches_fuzz_build(self):
        targets = zf_targets.parse_fuzz_build(read("fuzz", "BUILD"))
        table = [line.split() for line in self.lists["target"]]
        self.assertEqual([t[0] for t in table], [t["name"] for t in targets])
        for (name, max_len, libs), target in zip(table, targets):
            self.assertEqual(target["srcs"], [name + ".cc"])
            self.assertTrue(os.path.isfile(os.path.join(ROOT, "fuzz", name + ".cc")))
            # build.sh writes max_len and dict only: any other option must be added there.
            self.assertEqual(set(target["options"]), {"max_len"}, name)
            self.assertEqual(target["options"]["max_len"], max_len)
            self.assertEqual(target["dict"], "//corpus:%s.dict" % name)
            self.assertTrue(os.path.isfile(os.path.join(ROOT, "corpus", name + ".dict")))
            expected = ("upstream" if target["upstream"] else
                        "kernel" if target["deps"] == ["//zpool/kernel"] else "all")
            self.assertEqual(libs, expected, name)


class ClusterFuzzLiteTest(unittest.TestCase):
    def test_files(self):
        self.assertRegex(read(".clusterfuzzlite", "project.yaml"), r"(?m)^language: c\+\+$")
        docker = read(".clusterfuzzlite", "Dockerfile")
        self.assertRegex(docker, r"(?m)^FROM gcr\.io/oss-fuzz-base/base-builder$")
        self.assertRegex(docker, r"(?m)^COPY \. \$SRC/zfuzz$")
        self.assertRegex(docker, r"(?m)^WORKDIR \$SRC/zfuzz$")
        self.assertRegex(docker, r"(?m)^COPY \.clusterfuzzlite/build\.sh \$SRC/$")
        entry = os.path.join(ROOT, ".clusterfuzzlite", "build.sh")
        self.assertTrue(os.access(entry, os.X_OK))
        self.assertIn('"$SRC/zfuzz/tools/oss_fuzz/build.sh"', read(".clusterfuzzlite",
                                                                  "build.sh"))
        self.assertTrue(os.access(BUILD_SH, os.X_OK))
        self.assertIn("set -euo pipefail", read("tools", "oss_fuzz", "build.sh"))

    def test_build_sh_refuses_a_missing_environment(self):
        proc = subprocess.run(["bash", BUILD_SH], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={"PATH": os.environ["PATH"]})
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("CXX is not set", proc.stderr)

    def test_build_sh_refuses_an_unknown_target(self):
        with tempfile.TemporaryDirectory() as tmp:
            env = {"PATH": os.environ["PATH"], "CXX": "false", "OUT": tmp, "SRC": tmp,
                   "ZFUZZ_ROOT": ROOT, "LIB_FUZZING_ENGINE": "-fsanitize=fuzzer",
                   "ZFUZZ_TARGETS": "no_such_fuzz"}
            proc = subprocess.run(["bash", BUILD_SH], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
            self.assertEqual(proc.returncode, 2)
            self.assertIn("unknown target 'no_such_fuzz'", proc.stderr)
            env["ZFUZZ_ROOT"] = tmp
            proc = subprocess.run(["bash", BUILD_SH], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
            self.assertEqual(proc.returncode, 1)
            self.assertIn("not the zfuzz repository", proc.stderr)


class VariablesTest(unittest.TestCase):
    def test_address(self):
        env = ossfuzz.build_env("address", "libfuzzer", "/s", "/w", "/o")
        self.assertEqual((env["CC"], env["CXX"]), ("clang-19", "clang++-19"))
        flags = env["CFLAGS"].split()
        for flag in ("-O1", "-fno-omit-frame-pointer", "-gline-tables-only",
                     "-fsanitize=address", "-fsanitize-address-use-after-scope",
                     "-fsanitize=fuzzer-no-link", "-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION"):
            self.assertIn(flag, flags)
        self.assertEqual(env["CXXFLAGS"], env["CFLAGS"] + " -stdlib=libc++")
        self.assertEqual(env["LIB_FUZZING_ENGINE"].split()[0], "-fsanitize=fuzzer")
        self.assertEqual((env["SRC"], env["WORK"], env["OUT"], env["SANITIZER"]),
                         ("/s", "/w", "/o", "address"))

    def test_undefined(self):
        env = ossfuzz.build_env("undefined", "libfuzzer", "/s", "/w", "/o")
        self.assertNotIn("address", env["CFLAGS"])
        m = re.search(r"-fsanitize=(\S+) -fno-sanitize-recover=(\S+)", env["CFLAGS"])
        checks, fatal = set(m.group(1).split(",")), set(m.group(2).split(","))
        self.assertEqual(checks - fatal, {"unsigned-integer-overflow"})
        self.assertIn("signed-integer-overflow", fatal)
        self.assertIn("silence_unsigned_overflow=1", ossfuzz.RUN_ENV["undefined"]["UBSAN_OPTIONS"])

    def test_memory_needs_the_msan_libcxx(self):
        with self.assertRaises(common.ZfuzzError):
            ossfuzz.build_env("memory", "libfuzzer", "/s", "/w", "/o")
        env = ossfuzz.build_env("memory", "libfuzzer", "/s", "/w", "/o", libcxx_lib="/l")
        self.assertIn("-fsanitize=memory", env["CFLAGS"].split())
        self.assertIn("-fsanitize-memory-track-origins", env["CFLAGS"].split())
        engine = env["LIB_FUZZING_ENGINE"].split()
        self.assertIn("-L/l", engine)
        self.assertIn("-Wl,-rpath,/l", engine)

    def test_unknown_values(self):
        for sanitizer, engine in (("thread", "libfuzzer"), ("address", "afl")):
            with self.assertRaises(common.ZfuzzError) as ctx:
                ossfuzz.build_env(sanitizer, engine, "/s", "/w", "/o")
            self.assertEqual(ctx.exception.exit_code, 2)

    def test_parser(self):
        parser = cli.OneLineParser(prog="tools/zfuzz")
        sub = parser.add_subparsers(dest="command")
        ossfuzz.add_parser(sub)
        args = parser.parse_args(["oss-fuzz"])
        self.assertEqual((args.sanitizer, args.engine, args.out, args.targets),
                         ("address", "libfuzzer", None, []))
        args = parser.parse_args(["oss-fuzz", "--sanitizer", "undefined", "zbud_api_fuzz"])
        self.assertEqual((args.sanitizer, args.targets), ("undefined", ["zbud_api_fuzz"]))
        out = io.StringIO()
        with self.assertRaises(SystemExit):
            with contextlib.redirect_stdout(out):
                parser.parse_args(["oss-fuzz", "--help"])
        self.assertIn("--sanitizer {address,undefined,memory}", out.getvalue())
        err = io.StringIO()
        with self.assertRaises(SystemExit) as ctx:
            with contextlib.redirect_stderr(err):
                parser.parse_args(["oss-fuzz", "--sanitizer", "thread"])
        self.assertEqual(ctx.exception.code, 2)
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1)


class PackageTest(unittest.TestCase):
    def test_expected_options_match_the_genrule(self):
        targets = zf_targets.parse_fuzz_build(read("fuzz", "BUILD"))
        for t in targets:
            text = ossfuzz.expected_options(t)
            self.assertEqual(text, "[libfuzzer]\nmax_len = %s\ndict = %s.dict\n"
                             % (t["options"]["max_len"], t["name"]))
            built = os.path.join(ROOT, "bazel-bin", "fuzz", t["name"] + ".options")
            if os.path.exists(built):  # what zfuzz_target's genrule wrote, if built
                with open(built) as f:
                    self.assertEqual(f.read(), text)
        self.assertEqual(ossfuzz.expected_options({"name": "x", "options": {}, "dict": None}),
                         "[libfuzzer]\n")

    def test_options_flags(self):
        self.assertEqual(ossfuzz.options_flags("[libfuzzer]\nmax_len = 4096\ndict = x.dict\n"),
                         ["-max_len=4096", "-dict=x.dict"])
        for bad in ("max_len = 1\n", "[afl]\nx = 1\n", "[libfuzzer\n"):
            with self.assertRaises(common.ZfuzzError):
                ossfuzz.options_flags(bad)

    def test_libfuzzer_output(self):
        text = ("INFO: seed corpus: files: 57 min: 31b max: 595b total: 15028b rss: 39Mb\n"
                "#58\tINITED cov: 243 ft: 1118 corp: 51/12998b exec/s: 0 rss: 41Mb\n"
                "#58\tDONE   cov: 243 ft: 1118 corp: 51/12998b lim: 595 exec/s: 0 rss: 41Mb\n"
                "Done 58 runs in 0 second(s)\n")
        self.assertEqual(ossfuzz.parse_libfuzzer_output(text), (58, True))
        self.assertEqual(ossfuzz.parse_libfuzzer_output("==1==ERROR: AddressSanitizer\n"),
                         (0, False))

    def test_missing_files(self):
        with tempfile.TemporaryDirectory() as out:
            self.assertEqual(ossfuzz.missing_files(out, "x"), ossfuzz.expected_files("x"))
            for f in ossfuzz.expected_files("x"):
                with open(os.path.join(out, f), "w") as fh:
                    fh.write("x")
            self.assertEqual(ossfuzz.missing_files(out, "x"), ["x"])  # not executable
            os.chmod(os.path.join(out, "x"), 0o755)
            self.assertEqual(ossfuzz.missing_files(out, "x"), [])

    def test_select_targets(self):
        self.assertEqual(ossfuzz.select_targets([], ["a", "b"]), ["a", "b"])
        self.assertEqual(ossfuzz.select_targets(["b", "b"], ["a", "b"]), ["b"])
        with self.assertRaises(common.ZfuzzError):
            ossfuzz.select_targets(["c"], ["a", "b"])

    def test_prepare_out(self):
        for inside in ("corpus", "zpool", "tools/oss_fuzz"):
            with self.assertRaises(common.ZfuzzError):
                ossfuzz.prepare_out(os.path.join(ROOT, inside, "pkg"))
        with tempfile.TemporaryDirectory() as tmp:
            mine = os.path.join(tmp, "mine")
            os.makedirs(mine)
            with open(os.path.join(mine, "precious"), "w") as f:
                f.write("keep")
            with self.assertRaises(common.ZfuzzError):
                ossfuzz.prepare_out(mine)
            self.assertTrue(os.path.exists(os.path.join(mine, "precious")))
            out = ossfuzz.prepare_out(os.path.join(tmp, "out"))
            with open(os.path.join(out, "old_fuzz"), "w") as f:
                f.write("stale")
            self.assertEqual(ossfuzz.prepare_out(out), out)  # marked: emptied
            self.assertEqual(os.listdir(out), [ossfuzz.MARKER])


@unittest.skipIf(os.environ.get("ZFUZZ_SKIP_SLOW_TESTS") == "1", "ZFUZZ_SKIP_SLOW_TESTS=1")
@unittest.skipUnless(common.which("clang++-19") and os.path.isdir(ossfuzz.LIBCXX_HEADERS),
                     "clang++-19 or libc++ headers missing")
class BuildOneTargetTest(unittest.TestCase):
    """build.sh for kernel_api_fuzz with OSS-Fuzz's ASan flags, as `oss-fuzz` runs it."""
    TARGET = "kernel_api_fuzz"

    def test_package(self):
        tmp = tempfile.mkdtemp(prefix="zfuzz-test-oss-fuzz-")
        try:
            src, work, out = (os.path.join(tmp, d) for d in ("src", "work", "out"))
            for d in (src, work, out):
                os.makedirs(d)
            os.symlink(ROOT, os.path.join(src, "zfuzz"))
            env = dict(os.environ, **ossfuzz.build_env("address", "libfuzzer", src, work, out))
            env["ZFUZZ_TARGETS"] = self.TARGET
            env.pop("ZFUZZ_ROOT", None)
            proc = subprocess.run(["bash", BUILD_SH], cwd=os.path.join(src, "zfuzz"), env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  timeout=600)
            self.assertEqual(proc.returncode, 0, proc.stdout[-3000:])
            self.assertEqual(sorted(os.listdir(out)), sorted(ossfuzz.expected_files(self.TARGET)))
            self.assertEqual(ossfuzz.missing_files(out, self.TARGET), [])
            targets = {t["name"]: t for t in zf_targets.parse_fuzz_build(read("fuzz", "BUILD"))}
            with open(os.path.join(out, self.TARGET + ".options")) as f:
                self.assertEqual(f.read(), ossfuzz.expected_options(targets[self.TARGET]))
            with open(os.path.join(out, self.TARGET + ".dict")) as f:
                self.assertEqual(f.read(), read("corpus", self.TARGET + ".dict"))
            seeds = sorted(os.listdir(os.path.join(ROOT, "corpus", self.TARGET)))
            with zipfile.ZipFile(os.path.join(out, self.TARGET + "_seed_corpus.zip")) as zf:
                self.assertEqual(sorted(zf.namelist()), seeds)
                first = seeds[0]
                with open(os.path.join(ROOT, "corpus", self.TARGET, first), "rb") as f:
                    self.assertEqual(zf.read(first), f.read())
            # The binary is an ASan libFuzzer binary and runs the seed corpus.
            row = ossfuzz.check_target(out, targets[self.TARGET], "address",
                                       os.path.join(tmp, "runs.log"))
            self.assertTrue(row.ok, row.result + "\n" + common.tail_of(
                os.path.join(tmp, "runs.log"), 20))
            self.assertEqual(row.seeds, len(seeds))
            self.assertGreaterEqual(row.runs, len(seeds))
            with open(os.path.join(out, self.TARGET), "rb") as f:
                self.assertIn(b"__asan_init", f.read())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
