# SPDX-License-Identifier: GPL-2.0-only
"""Unit tests of `coverage`'s pure parts: arguments, fuzz target discovery, the out directory,
llvm-cov's JSON summary into the table (a recorded sample), the --min-lines threshold, the
uncovered ranges from `llvm-cov show` text and their functions, the ignore regex."""
import argparse
import contextlib
import io
import os
import re
import shutil
import tempfile
import unittest

from zfuzzlib import cli, common, coverage
from zfuzzlib import targets as zf_targets

# Recorded from `llvm-cov-19 export -summary-only` of //fuzz:zbud_api_fuzz_replay (trimmed to a
# few files; a fake test file added): Bazel's paths appear as /proc/self/cwd/<path>.
SAMPLE_EXPORT = {
    "type": "llvm.coverage.json.export",
    "version": "2.0.1",
    "data": [{
        "files": [
            {"filename": "/proc/self/cwd/fuzz/api/program.cc", "summary": {
                "lines": {"count": 559, "covered": 501, "percent": 89.62},
                "branches": {"count": 396, "covered": 287, "notcovered": 109, "percent": 72.47},
                "functions": {"count": 51, "covered": 46, "percent": 90.19}}},
            {"filename": "/proc/self/cwd/zpool/kernel/lock.h", "summary": {
                "lines": {"count": 46, "covered": 23, "percent": 50},
                "branches": {"count": 0, "covered": 0, "notcovered": 0, "percent": 0},
                "functions": {"count": 36, "covered": 19, "percent": 52.77}}},
            {"filename": "/proc/self/cwd/zpool/misuse.h", "summary": {
                "lines": {"count": 0, "covered": 0, "percent": 0},
                "branches": {"count": 0, "covered": 0, "notcovered": 0, "percent": 0},
                "functions": {"count": 0, "covered": 0, "percent": 0}}},
            {"filename": "/proc/self/cwd/zpool/zbud.cc", "summary": {
                "lines": {"count": 808, "covered": 596, "percent": 73.76},
                "branches": {"count": 530, "covered": 288, "notcovered": 242, "percent": 54.33},
                "functions": {"count": 60, "covered": 58, "percent": 96.66}}},
            {"filename": "/proc/self/cwd/zpool/zbud_test.cc", "summary": {
                "lines": {"count": 100, "covered": 100, "percent": 100},
                "branches": {"count": 10, "covered": 10, "notcovered": 0, "percent": 100},
                "functions": {"count": 5, "covered": 5, "percent": 100}}},
            {"filename": "/proc/self/cwd/zpool/testing/fake.cc", "summary": {
                "lines": {"count": 10, "covered": 0, "percent": 0},
                "branches": {"count": 0, "covered": 0, "notcovered": 0, "percent": 0},
                "functions": {"count": 1, "covered": 0, "percent": 0}}},
        ],
        "functions": [
            {"name": "zbud_create_pool", "filenames": ["/proc/self/cwd/zpool/zbud.cc"],
             "regions": [[571, 75, 600, 2, 134, 0, 0, 0], [573, 5, 579, 4, 0, 0, 0, 0]]},
            {"name": "zbud.cc:_ZN12_GLOBAL__N_19Validator9CheckPageEP11zbud_header",
             "filenames": ["/proc/self/cwd/zpool/zbud.cc"],
             "regions": [[1035, 40, 1101, 2, 7, 0, 0, 0]]},
            {"name": "LLVMFuzzerTestOneInput",
             "filenames": ["/proc/self/cwd/fuzz/zbud_api_fuzz.cc"],
             "regions": [[10, 1, 20, 2, 15, 0, 0, 0]]},
        ],
        "totals": {},
    }],
}

# `llvm-cov-19 show -show-instantiations=false` text for two files (excerpts, real format).
SAMPLE_SHOW = """\
/proc/self/cwd/zpool/zbud.cc:
  570|       |
  571|    134|struct zbud_pool *zbud_create_pool(gfp_t gfp, const struct zbud_ops *ops) {
  572|    134|  if (ZPOOL_CHECKS && gfpflags_allow_blocking(gfp) && kc_in_atomic()) {
  573|      0|    ZPOOL_MISUSE(ZPOOL_MISUSE_SLEEP_WHILE_MAPPED,
  574|      0|                 "zbud_create_pool(%#x): may sleep",
  575|       |                 // a comment inside the range
  576|      0|    gfp &= ~__GFP_DIRECT_RECLAIM;
  577|      0|  }
  578|  2.91k|  kmem_cache *cache = PoolCache();
  579|  1.20M|  if (cache == nullptr) return nullptr;
 1038|      0|    return error("bad page");
 1039|      7|  ok();
 1040|      0|  x();
 1041|      0|  y();
  ------------------
  |  Branch (572:7): [True: 0, False: 134]
  ------------------

/proc/self/cwd/zpool/zpool.cc:
   10|      1|int a() {
   11|      0|  return 0;
"""


class ParserTest(unittest.TestCase):
    def parse(self, argv):
        parser = cli.OneLineParser(prog="tools/zfuzz")
        sub = parser.add_subparsers(dest="command")
        coverage.add_parser(sub)
        return parser.parse_args(argv)

    def test_defaults(self):
        args = self.parse(["coverage"])
        self.assertEqual(args.targets, [])
        self.assertTrue(args.html)
        self.assertIsNone(args.min_lines)
        self.assertEqual(args.out, coverage.DEFAULT_OUT)
        self.assertFalse(args.out.startswith(os.path.join(common.REPO_ROOT, "corpus")))
        self.assertIs(args.func, coverage.run_coverage)

    def test_options(self):
        args = self.parse(["coverage", "zbud_api_fuzz", "//fuzz:zpool_api_fuzz", "--no-html",
                           "--min-lines", "90", "--out", "/tmp/x", "--uncovered"])
        self.assertEqual(args.targets, ["zbud_api_fuzz", "//fuzz:zpool_api_fuzz"])
        self.assertFalse(args.html)
        self.assertEqual(args.min_lines, "90")
        self.assertEqual(args.out, "/tmp/x")
        self.assertTrue(args.uncovered)

    def test_help(self):
        out = io.StringIO()
        with self.assertRaises(SystemExit) as ctx:
            with contextlib.redirect_stdout(out):
                self.parse(["coverage", "--help"])
        self.assertEqual(ctx.exception.code, 0)
        self.assertIn("--min-lines PCT", out.getvalue())
        self.assertIn("PCT% of its lines", out.getvalue())
        self.assertIn("--no-html", out.getvalue())

    def test_bad_flag_is_a_one_line_error(self):
        err = io.StringIO()
        with self.assertRaises(SystemExit) as ctx:
            with contextlib.redirect_stderr(err):
                self.parse(["coverage", "--min-lines"])
        self.assertEqual(ctx.exception.code, 2)
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1)
        self.assertIn("coverage", err.getvalue())


class TargetsTest(unittest.TestCase):
    BUILD = '''
load("//tools/bazel:fuzz.bzl", "zfuzz_target")

zfuzz_target(
    name = "a_fuzz",
    srcs = ["a_fuzz.cc"],  # a comment with ) and ]
    dict = "//corpus:a_fuzz.dict",
    options = {"max_len": "4096", "timeout": "5"},
    deps = ["//zpool/kernel"],
)

cc_library(name = "not_a_target")

zfuzz_target(
    name = "b_fuzz",
    srcs = ["b_fuzz.cc"],
    deps = [
        "//fuzz/api:oplang",
        "//zpool",
    ],
)
'''

    def test_parse_fuzz_build(self):
        targets = zf_targets.parse_fuzz_build(self.BUILD)
        self.assertEqual([t["name"] for t in targets], ["a_fuzz", "b_fuzz"])
        self.assertEqual(targets[0]["options"], {"max_len": "4096", "timeout": "5"})
        self.assertEqual(targets[0]["dict"], "//corpus:a_fuzz.dict")
        self.assertEqual(targets[0]["deps"], ["//zpool/kernel"])
        self.assertEqual(targets[0]["srcs"], ["a_fuzz.cc"])
        self.assertEqual(targets[1]["deps"], ["//fuzz/api:oplang", "//zpool"])
        self.assertIsNone(targets[1]["dict"])
        self.assertEqual(targets[1]["options"], {})

    def test_the_repository_targets_match_corpus_build(self):
        names = coverage.fuzz_targets()
        self.assertIn("zbud_api_fuzz", names)
        self.assertIn("zsmalloc_api_fuzz", names)
        self.assertIn("zpool_api_fuzz", names)
        with open(os.path.join(common.REPO_ROOT, "corpus", "BUILD")) as f:
            listed = re.findall(r'^\s*"([a-z0-9_]+_fuzz)",$', f.read(), re.M)
        self.assertEqual(sorted(names), sorted(listed))
        for name in names:
            dirs = coverage.corpus_dirs(name)
            self.assertEqual(dirs[0], os.path.join(common.REPO_ROOT, "corpus", name))
            for d in dirs:
                self.assertTrue(os.path.isdir(d), d)

    def test_resolve_targets(self):
        known = ["a_fuzz", "b_fuzz", "c_fuzz"]
        self.assertEqual(coverage.resolve_targets([], known), known)
        self.assertEqual(coverage.resolve_targets(["//fuzz:b_fuzz", "a_fuzz", "b_fuzz"], known),
                         ["b_fuzz", "a_fuzz"])
        with self.assertRaises(common.ZfuzzError) as ctx:
            coverage.resolve_targets(["a_fuzz", "nope_fuzz"], known)
        self.assertEqual(ctx.exception.exit_code, 2)
        self.assertIn("nope_fuzz", str(ctx.exception))
        self.assertNotIn("\n", str(ctx.exception))

    def test_missing_corpus(self):
        with tempfile.TemporaryDirectory() as root:
            with self.assertRaises(common.ZfuzzError):
                coverage.corpus_dirs("x_fuzz", root)
            os.makedirs(os.path.join(root, "corpus", "x_fuzz"))
            self.assertEqual(coverage.corpus_dirs("x_fuzz", root),
                             [os.path.join(root, "corpus", "x_fuzz")])
            os.makedirs(os.path.join(root, "corpus", "regressions", "x_fuzz"))
            self.assertEqual(len(coverage.corpus_dirs("x_fuzz", root)), 2)


class ArgumentsTest(unittest.TestCase):
    def test_min_lines(self):
        self.assertIsNone(coverage.parse_min_lines(None))
        self.assertEqual(coverage.parse_min_lines("90"), 90.0)
        self.assertEqual(coverage.parse_min_lines("85.5%"), 85.5)
        self.assertEqual(coverage.parse_min_lines("0"), 0.0)
        for bad in ("abc", "101", "-1", ""):
            with self.assertRaises(common.ZfuzzError) as ctx:
                coverage.parse_min_lines(bad)
            self.assertEqual(ctx.exception.exit_code, 2)

    def test_out_dir(self):
        with self.assertRaises(common.ZfuzzError):
            coverage.check_out_dir(os.path.join(common.REPO_ROOT, "corpus", "report"))
        with self.assertRaises(common.ZfuzzError):
            coverage.check_out_dir(os.path.join(common.REPO_ROOT, "corpus"))
        with self.assertRaises(common.ZfuzzError):
            coverage.check_out_dir(common.REPO_ROOT)
        tmp = tempfile.mkdtemp()
        try:
            made = coverage.check_out_dir(os.path.join(tmp, "a", "b"))
            self.assertTrue(os.path.isdir(made))
            self.assertEqual(os.listdir(made), [])
        finally:
            shutil.rmtree(tmp)

    def test_missing_tools_is_one_line(self):
        with self.assertRaises(common.ZfuzzError) as ctx:
            coverage.check_tools(("zfuzz-no-such-tool-19",))
        self.assertIn("zfuzz-no-such-tool-19", str(ctx.exception))
        self.assertNotIn("\n", str(ctx.exception))

    def test_unknown_target_fails_before_building(self):
        args = argparse.Namespace(targets=["no_such_fuzz"], out=tempfile.gettempdir(),
                                  html=False, min_lines=None, uncovered=False)
        with self.assertRaises(common.ZfuzzError) as ctx:
            coverage.run_coverage(args)
        self.assertIn("no_such_fuzz", str(ctx.exception))
        args = argparse.Namespace(targets=[], out=tempfile.gettempdir(), html=False,
                                  min_lines="x", uncovered=False)
        with self.assertRaises(common.ZfuzzError):
            coverage.run_coverage(args)


class SummaryTest(unittest.TestCase):
    def test_paths(self):
        self.assertEqual(coverage.relative_source("/proc/self/cwd/zpool/zbud.cc"),
                         "zpool/zbud.cc")
        self.assertEqual(coverage.relative_source(
            os.path.join(common.REPO_ROOT, "zpool", "zpool.cc")), "zpool/zpool.cc")
        self.assertEqual(coverage.relative_source("/usr/include/x.h"), "/usr/include/x.h")
        self.assertTrue(coverage.is_reported("zpool/kernel/slab.cc"))
        self.assertTrue(coverage.is_reported("zpool/zbud.cc"))
        self.assertFalse(coverage.is_reported("zpool/zbud_test.cc"))
        self.assertFalse(coverage.is_reported("zpool/testing/x.cc"))
        self.assertFalse(coverage.is_reported("fuzz/api/program.cc"))
        self.assertFalse(coverage.is_reported("/usr/include/x.h"))
        self.assertTrue(coverage.is_reported("external/linux_source/mm/z3fold.c"))
        self.assertFalse(coverage.is_reported("external/linux_source/include/linux/zpool.h"))

    def test_summarize_keeps_zpool_sources_only(self):
        rows, total = coverage.summarize(SAMPLE_EXPORT)
        self.assertEqual([r["file"] for r in rows],
                         ["zpool/kernel/lock.h", "zpool/zbud.cc"])  # misuse.h: nothing counted
        zbud = rows[1]
        self.assertEqual(zbud["lines"], {"covered": 596, "count": 808,
                                         "percent": 100.0 * 596 / 808})
        self.assertEqual(zbud["branches"]["covered"], 288)
        self.assertEqual(zbud["functions"]["count"], 60)
        self.assertIsNone(rows[0]["branches"]["percent"])  # no branches: no percentage
        self.assertEqual(total["lines"]["covered"], 596 + 23)
        self.assertEqual(total["lines"]["count"], 808 + 46)
        self.assertEqual(total["branches"]["count"], 530)
        self.assertAlmostEqual(total["lines"]["percent"], 100.0 * 619 / 854)

    def test_bad_json(self):
        with self.assertRaises(common.ZfuzzError):
            coverage.summarize({"data": []})

    def test_table(self):
        rows, total = coverage.summarize(SAMPLE_EXPORT)
        table = coverage.format_table(rows, total).splitlines()
        self.assertEqual(table[0].split(), ["file", "lines", "branches", "functions"])
        self.assertIn("596/808  73.8%", table[3])
        self.assertIn("288/530  54.3%", table[3])
        self.assertTrue(table[3].startswith("zpool/zbud.cc "))
        self.assertRegex(table[2], r"^zpool/kernel/lock\.h\s+23/46\s+50\.0%\s+-\s+19/36")
        self.assertTrue(table[-1].startswith("TOTAL"))
        self.assertIn("619/854  72.5%", table[-1])
        self.assertEqual(len(table), 6)  # header, rule, 2 rows, rule, total
        widths = {len(line) for line in table if not line.startswith("zpool/kernel/lock.h")}
        self.assertEqual(len(widths), 1, table)  # the columns line up

    def test_threshold(self):
        rows, _ = coverage.summarize(SAMPLE_EXPORT)
        self.assertEqual(coverage.below_threshold(rows, 90), [("zpool/zbud.cc",
                                                                100.0 * 596 / 808)])
        self.assertEqual(coverage.below_threshold(rows, 73.7), [])
        self.assertEqual(coverage.below_threshold(rows, 0), [])
        only_kernel = [r for r in rows if r["file"].startswith("zpool/kernel/")]
        with self.assertRaises(common.ZfuzzError) as ctx:
            coverage.below_threshold(only_kernel, 90)
        self.assertIn("zbud.cc", str(ctx.exception))


class UncoveredTest(unittest.TestCase):
    def test_parse_show(self):
        ranges = coverage.parse_show_uncovered(SAMPLE_SHOW)
        # 573-577 is one range (575 has no count); 578/579 covered (k, M suffixes); 1038 alone
        # because 1039 ran; 1040-1041 until the branch listing.
        self.assertEqual(ranges["zpool/zbud.cc"], [(573, 577), (1038, 1038), (1040, 1041)])
        self.assertEqual(ranges["zpool/zpool.cc"], [(11, 11)])

    def test_function_spans_and_names(self):
        spans = coverage.function_spans(SAMPLE_EXPORT)
        self.assertEqual(sorted(spans), ["fuzz/zbud_api_fuzz.cc", "zpool/zbud.cc"])
        self.assertEqual(coverage.innermost_function(spans["zpool/zbud.cc"], 575),
                         "zbud_create_pool")
        self.assertIsNone(coverage.innermost_function(spans["zpool/zbud.cc"], 10))
        nested = [(1, 100, "outer"), (10, 20, "inner")]
        self.assertEqual(coverage.innermost_function(nested, 15), "inner")
        self.assertEqual(coverage.innermost_function(nested, 50), "outer")

    def test_names(self):
        self.assertEqual(coverage.strip_file_prefix("zbud.cc:_ZN1a1bEv"), "_ZN1a1bEv")
        self.assertEqual(coverage.strip_file_prefix("zs_malloc"), "zs_malloc")
        self.assertEqual(coverage.short_function(
            "(anonymous namespace)::Validator::CheckPage(zbud_header*)"), "Validator::CheckPage")
        self.assertEqual(coverage.short_function(
            "kc::IntrusiveList<zspage, FullnessList>::remove(zspage*)"),
            "kc::IntrusiveList<zspage, FullnessList>::remove")
        self.assertEqual(coverage.short_function("zs_malloc"), "zs_malloc")

    @unittest.skipUnless(common.which(coverage.LLVM_CXXFILT), "llvm-cxxfilt-19 missing")
    def test_annotate_demangles(self):
        ranges = coverage.parse_show_uncovered(SAMPLE_SHOW)
        spans = coverage.function_spans(SAMPLE_EXPORT)
        out = coverage.annotate_uncovered(ranges, spans)
        zbud = out["zpool/zbud.cc"]
        self.assertEqual(zbud[0], {"first": 573, "last": 577, "lines": 5,
                                   "function": "zbud_create_pool"})
        self.assertEqual(zbud[1]["function"], "Validator::CheckPage")
        self.assertEqual(out["zpool/zpool.cc"][0]["function"], None)
        text = coverage.format_uncovered(out, {"zpool/zbud.cc": 808})
        self.assertIn("zpool/zbud.cc: 8 uncovered line(s) in 3 range(s) (of 808 lines)", text)
        self.assertRegex(text, r"Validator::CheckPage\s+3  1038, 1040-1041")
        self.assertIn("(macro body or initializer)", text)

    def test_ignore_regex(self):
        for root in (common.REPO_ROOT, "/home/me/fuzz/zfuzz"):
            regex = re.compile(coverage.ignore_regex(root))
            for ignored in ("/proc/self/cwd/fuzz/api/program.cc",
                            root + "/fuzz/zbud_api_fuzz.cc",
                            "/proc/self/cwd/external/x/y.h",
                            "/proc/self/cwd/external/com_google_googletest/g.cc",
                            "/proc/self/cwd/external/lib/x.h",
                            "/proc/self/cwd/zpool/zbud_test.cc",
                            "/proc/self/cwd/zpool/testing/x.cc"):
                self.assertTrue(regex.search(ignored), (root, ignored))
            for kept in ("/proc/self/cwd/zpool/zbud.cc", root + "/zpool/kernel/slab.cc",
                         "/proc/self/cwd/external/linux_source/mm/zsmalloc.c"):
                self.assertFalse(regex.search(kept), (root, kept))


if __name__ == "__main__":
    unittest.main()
