# SPDX-License-Identifier: GPL-2.0-only
"""Unit tests of `bench`'s pure parts: argument checking, the out directory, merging runs into
medians and ratios, the hardening and target summaries, the kernel's zsmalloc formulas, the
engines' output parsers, and the table."""
import argparse
import contextlib
import io
import json
import os
import struct
import tempfile
import unittest

from zfuzzlib import bench, cli, common


def run(contender, store=100.0, load=200.0, refill=150.0, overhead=0.05, compacted=None,
        skipped=0):
    density = {"alloc": {"overhead": overhead, "density": 1 / (1 + overhead),
                         "used_bytes": 1050.0, "live_bytes": 1000.0, "stat_bytes": -1,
                         "rss_bytes": 1100.0}}
    if compacted is not None:
        density["compacted"] = {"overhead": compacted, "density": 1 / (1 + compacted),
                                "used_bytes": 0, "live_bytes": 0, "stat_bytes": 0,
                                "rss_bytes": 0}
    return {
        "contender": contender, "build": "b", "memory_method": "m", "objects": 10,
        "skipped_too_large": skipped,
        "phases": {"store": {"ops_per_sec": store}, "load": {"ops_per_sec": load},
                   "refill": {"ops_per_sec": refill},
                   "compact": {"seconds": 0.1, "supported": True}},
        "density": density,
    }


class ParserTest(unittest.TestCase):
    def parse(self, argv):
        parser = cli.OneLineParser(prog="tools/zfuzz")
        sub = parser.add_subparsers(dest="command")
        bench.add_parser(sub)
        return parser.parse_args(argv)

    def test_modes(self):
        self.assertEqual(self.parse(["bench"]).mode, "quick")
        self.assertEqual(self.parse(["bench", "--full"]).mode, "full")
        self.assertEqual(self.parse(["bench", "--quick", "--out", "/x"]).out, "/x")

    def test_quick_and_full_exclude_each_other_in_one_line(self):
        err = io.StringIO()
        with self.assertRaises(SystemExit) as ctx:
            with contextlib.redirect_stderr(err):
                self.parse(["bench", "--quick", "--full"])
        self.assertEqual(ctx.exception.code, 2)
        self.assertEqual(len(err.getvalue().strip().splitlines()), 1)
        self.assertIn("not allowed with", err.getvalue())

    def test_unknown_flag_is_refused(self):
        parser = cli.OneLineParser(prog="tools/zfuzz")
        sub = parser.add_subparsers(dest="command")
        bench.add_parser(sub)
        args, extra = parser.parse_known_args(["bench", "--bogus"])
        self.assertEqual(extra, ["--bogus"])


class ParamsTest(unittest.TestCase):
    def test_modes_and_overrides(self):
        quick = bench.resolve_params("quick")
        self.assertEqual(quick["mode"], "quick")
        self.assertGreaterEqual(quick["workload_pages"], quick["pages"])
        full = bench.resolve_params("full", reps="7", pages="30000")
        self.assertEqual(full["reps"], 7)
        self.assertEqual(full["pages"], 30000)
        big = bench.resolve_params("quick", pages="50000")
        self.assertEqual(big["density_pages"], 50000)
        self.assertEqual(big["workload_pages"], 50000)

    def test_bad_values_are_one_line_errors(self):
        for reps, pages in (("0", None), ("x", None), (None, "99"), (None, "1e5"), ("-3", None)):
            with self.assertRaises(common.ZfuzzError) as ctx:
                bench.resolve_params("quick", reps, pages)
            self.assertEqual(ctx.exception.exit_code, 2)
            self.assertNotIn("\n", str(ctx.exception))
        with self.assertRaises(common.ZfuzzError):
            bench.resolve_params("medium")


class OutDirTest(unittest.TestCase):
    def test_created_and_writable(self):
        with tempfile.TemporaryDirectory() as d:
            path = bench.check_out_dir(os.path.join(d, "a", "b"))
            self.assertTrue(os.path.isdir(path))
            self.assertEqual(os.listdir(path), [])

    def test_unwritable_is_a_one_line_error(self):
        with tempfile.TemporaryDirectory() as d:
            blocker = os.path.join(d, "file")
            with open(blocker, "w") as f:
                f.write("x")
            with self.assertRaises(common.ZfuzzError) as ctx:
                bench.check_out_dir(os.path.join(blocker, "sub"))
            self.assertIn("--out", str(ctx.exception))
            self.assertNotIn("\n", str(ctx.exception))
            if os.geteuid() != 0:  # root writes anywhere
                ro = os.path.join(d, "ro")
                os.mkdir(ro, 0o500)
                with self.assertRaises(common.ZfuzzError):
                    bench.check_out_dir(ro)


class MergeTest(unittest.TestCase):
    def test_medians_and_ratios_against_glibc(self):
        speed = {
            "glibc": [run("glibc", store=100), run("glibc", store=300), run("glibc", store=200)],
            "zsmalloc": [run("zsmalloc", store=90, load=100), run("zsmalloc", store=190, load=50),
                         run("zsmalloc", store=150, load=None)],
        }
        merged = bench.merge_results(speed, {"lz4": {"zsmalloc": [run("zsmalloc",
                                                                      overhead=0.02)]}})
        self.assertEqual(merged["glibc"]["speed"]["store"]["ops_per_sec"], 200)
        self.assertEqual(merged["glibc"]["speed"]["store"]["vs_glibc"], 1.0)
        self.assertEqual(merged["zsmalloc"]["speed"]["store"]["ops_per_sec"], 150)
        self.assertAlmostEqual(merged["zsmalloc"]["speed"]["store"]["vs_glibc"], 0.75)
        # None (a phase a run did not report) is left out of the median.
        self.assertEqual(merged["zsmalloc"]["speed"]["load"]["ops_per_sec"], 75)
        self.assertAlmostEqual(merged["zsmalloc"]["density"]["lz4"]["alloc"]["overhead"], 0.02)
        self.assertEqual(merged["zsmalloc"]["runs"], 3)
        self.assertEqual(merged["glibc"]["density"]["lz4"], {})

    def test_without_baseline_ratios_are_none(self):
        merged = bench.merge_results({"zbud": [run("zbud")]}, {})
        self.assertIsNone(merged["zbud"]["speed"]["store"]["vs_glibc"])

    def test_median(self):
        self.assertEqual(bench.median([3, 1, 2]), 2)
        self.assertEqual(bench.median([1, 2, 3, 4]), 2.5)
        self.assertIsNone(bench.median([]))
        self.assertEqual(bench.median([None, float("nan"), 5]), 5)


class HardeningAndTargetsTest(unittest.TestCase):
    def test_hardening_cost(self):
        # Three pairs; the cost is the median of the per-pair time ratios, not a ratio of
        # medians: the noisy third pair (both halves slow) does not move it.
        pairs = {"zsmalloc": [
            {"unchecked": run("zsmalloc", store=100), "cheap": run("zsmalloc", store=90),
             "full": run("zsmalloc", store=50)},
            {"unchecked": run("zsmalloc", store=100), "cheap": run("zsmalloc", store=80),
             "full": run("zsmalloc", store=50)},
            {"unchecked": run("zsmalloc", store=10), "cheap": run("zsmalloc", store=9),
             "full": run("zsmalloc", store=5)},
        ]}
        h = bench.hardening_summary(pairs)
        self.assertEqual(h["zsmalloc"]["pairs"], 3)
        self.assertAlmostEqual(h["zsmalloc"]["cheap"]["store"]["cost"], 100 / 90 - 1)
        self.assertAlmostEqual(h["zsmalloc"]["cheap"]["store"]["ratio"], 0.9)
        self.assertAlmostEqual(h["zsmalloc"]["cheap"]["store"]["high"], 100 / 80 - 1)
        self.assertAlmostEqual(h["zsmalloc"]["full"]["store"]["cost"], 1.0)
        self.assertIsNone(h["zsmalloc"]["cheap"]["free_half"]["cost"])
        self.assertNotIn("zbud", h)

    def test_targets(self):
        speed = {"glibc": [run("glibc", store=100, load=100, refill=100)],
                 "zsmalloc": [run("zsmalloc", store=80, load=79, refill=200)]}
        density = {"lz4": {"zsmalloc": [run("zsmalloc", overhead=0.027, compacted=0.06)]}}
        merged = bench.merge_results(speed, density)
        # The verdict takes the allocation and map paths only (refill, load): store and the
        # phases with frees are reported but not judged.
        hard = {"zsmalloc": {"pairs": 9,
                             "cheap": {"store": {"ratio": 0.67, "cost": 0.5},
                                       "refill": {"ratio": 0.95, "cost": 0.05},
                                       "load": {"ratio": 0.8, "cost": 0.25},
                                       "steady": {"ratio": 0.5, "cost": 1.0}}}}
        checks = {c["target"]: c for c in bench.check_targets(merged, hard)}
        self.assertTrue(checks["zsmalloc chain 8 allocate-only overhead (lz4)"]["met"])
        self.assertFalse(checks["zsmalloc chain 8 after churn + zs_compact (lz4)"]["met"])
        self.assertTrue(checks["zsmalloc stores (fresh memory) vs glibc, 1 thread"]["met"])
        self.assertFalse(checks["zsmalloc loads vs glibc, 1 thread"]["met"])
        h = checks["zsmalloc always-on checks vs unchecked (alloc, map)"]
        self.assertFalse(h["met"])
        self.assertAlmostEqual(h["value"], 0.25)
        self.assertIn("load", h["detail"])
        self.assertIn("9 pairs", h["detail"])
        # Contenders that did not run: no verdict.
        self.assertIsNone(checks["zbud loads vs glibc, 1 thread"]["met"])


class KernelModelTest(unittest.TestCase):
    def test_huge_objects_take_a_page_each(self):
        self.assertEqual(bench.kernel_model_pages([4096] * 5, 8), 5)
        self.assertEqual(bench.kernel_model_pages([4000] * 3, 8), 3)

    def test_small_objects_share_zspages(self):
        # 24 + 8 bytes of handle: the 32-byte class, 128 objects a page.
        self.assertEqual(bench.kernel_model_pages([24] * 128, 8), 1)
        self.assertEqual(bench.kernel_model_pages([24] * 129, 8), 2)

    def test_chain_size_matters(self):
        sizes = [2200] * 1000 + [3000] * 1000 + [1500] * 1000
        self.assertLessEqual(bench.kernel_model_pages(sizes, 8), bench.kernel_model_pages(sizes, 4))

    def test_workload_reader_picks_evenly(self):
        fd, path = tempfile.mkstemp()
        n = 10
        header = struct.pack("<8sIIQQQQQQQ", b"ZFBENCH1", 4096, n, 1, 4096, 8192, 0, 0, 0, 0)
        table = b"".join(struct.pack("<QQIIII", 0, 0, 100 + i, 50 + i, 0, 0) for i in range(n))
        with os.fdopen(fd, "wb") as f:
            f.write(header.ljust(4096, b"\0") + table)
        self.addCleanup(os.unlink, path)
        ps, sizes = bench.read_workload_sizes(path)
        self.assertEqual(ps, 4096)
        self.assertEqual(sizes[3], (103, 53))
        _, some = bench.read_workload_sizes(path, 5)
        self.assertEqual([s[0] for s in some], [100, 102, 104, 106, 108])


class ParseTest(unittest.TestCase):
    def test_libfuzzer(self):
        text = ("INFO: Running with entropic power schedule\n"
                "Done 5000 runs in 2 second(s)\n"
                "stat::number_of_executed_units: 5000\n"
                "stat::average_exec_per_sec:     2500\n"
                "stat::new_units_added:          3\n"
                "zfuzz: operations executed: 400000\n")
        r = bench.parse_libfuzzer_output(text)
        self.assertEqual(r["execs"], 5000)
        self.assertEqual(r["execs_per_sec"], 2500)
        self.assertEqual(r["ops"], 400000)
        self.assertAlmostEqual(r["ops_per_sec"], 200000)
        self.assertNotIn("ops_per_sec", bench.parse_libfuzzer_output(
            "stat::number_of_executed_units: 10\nstat::average_exec_per_sec: 5\n"))

    def test_afl(self):
        r = bench.parse_afl_stats("start_time        : 1\nexecs_done        : 1234\n"
                                  "execs_per_sec     : 617.00\nstability         : 100.00%\n"
                                  "saved_crashes     : 0\n")
        self.assertEqual(r["execs"], 1234)
        self.assertEqual(r["execs_per_sec"], 617.0)
        self.assertEqual(r["stability"], "100.00%")
        self.assertEqual(r["crashes"], 0)


class BuildEventsTest(unittest.TestCase):
    def test_only_successes_count(self):
        fd, path = tempfile.mkstemp()
        events = [
            {"id": {"pattern": {"pattern": ["//x:missing"]}},
             "aborted": {"reason": "LOADING_FAILURE"}},
            {"id": {"targetCompleted": {"label": "//bench:ok"}},
             "completed": {"success": True}},
            {"id": {"targetCompleted": {"label": "//fuzz:broken"}}, "completed": {}},
            {"id": {"targetCompleted": {"label": "//fuzz:skipped"}},
             "aborted": {"reason": "SKIPPED"}},
        ]
        with os.fdopen(fd, "w") as f:
            for e in events:
                f.write(json.dumps(e) + "\n")
            f.write("{truncated\n")
        self.addCleanup(os.unlink, path)
        self.assertEqual(bench.built_labels(path), {"//bench:ok"})
        self.assertEqual(bench.built_labels(path + ".missing"), set())


class PinTest(unittest.TestCase):
    def test_idlest_cpu(self):
        before = bench.parse_proc_stat(
            "cpu  10 0 10 100 0 0 0 0 0 0\n"
            "cpu0 5 0 5 50 0 0 0 0 0 0\n"
            "cpu1 5 0 5 50 0 0 0 0 0 0\n"
            "intr 1 2 3\n")
        after = bench.parse_proc_stat(
            "cpu  10 0 10 100 0 0 0 0 0 0\n"
            "cpu0 95 0 5 60 0 0 0 0 0 0\n"
            "cpu1 10 0 5 140 5 0 0 0 0 0\n")
        self.assertEqual(set(before), {0, 1})
        self.assertEqual(bench.pick_cpu(before, after), 1)
        self.assertEqual(bench.pick_cpu(before, before), 0)  # no change: the first
        self.assertIsNone(bench.pick_cpu({}, after))


class FormatTest(unittest.TestCase):
    def test_rates_and_percentages(self):
        self.assertEqual(bench.fmt_rate(1234567), "1.23M")
        self.assertEqual(bench.fmt_rate(45678), "46k")
        self.assertEqual(bench.fmt_rate(12), "12")
        self.assertEqual(bench.fmt_rate(None), "-")
        self.assertEqual(bench.fmt_pct(0.0234), "+2.3%")
        self.assertEqual(bench.fmt_pct(0.1, signed=False), "10.0%")
        self.assertEqual(bench.fmt_ratio(0.8), "0.80x")

    def test_table_is_aligned(self):
        text = bench._table(["name", "value"], [["a", "1"], ["longer", "12345"]])
        lines = text.splitlines()
        self.assertEqual(len(lines), 4)
        self.assertEqual(lines[0], "name    value")
        self.assertEqual(lines[3], "longer  12345")

    def test_report(self):
        speed = {"glibc": [run("glibc")], "zsmalloc": [run("zsmalloc", store=50)]}
        density = {"lz4": {"zsmalloc": [run("zsmalloc", overhead=0.03, compacted=0.04)],
                           "glibc": [run("glibc", overhead=0.006)]},
                   "zstd": {}}
        merged = bench.merge_results(speed, density)
        report = {
            "params": bench.resolve_params("quick"),
            "machine": {"cpu": "CPU X", "nproc": 2, "kernel": "6.1", "page_fault_us": 1.5,
                        "loadavg_start": [3.0, 1, 1], "loadavg_end": [0.2, 1, 1]},
            "workload": {"pages": 10, "seed": 1, "same_filled_skipped": 2,
                         "categories": {"lib": {"pages": 10}},
                         "algos": {"lz4": {"mean": 2000.0, "p50": 1900, "stored_whole": 1}}},
            "contenders": merged,
            "model": {"lz4": {"zsmalloc": 0.029}},
            "targets": bench.check_targets(merged, {}),
            "fuzz": {bench.TRIVIAL: {"libfuzzer": {"status": "ok", "execs_per_sec": 1e6}},
                     "zpool_misuse_fuzz": {"libfuzzer": {"status": "ok", "execs_per_sec": 1700,
                                                         "finding": "exit 77"}},
                     "zbud_api_fuzz": {"asan-libfuzzer": {"status": "ok", "execs_per_sec": 900,
                                                          "ops_per_sec": 70000},
                                       "afl": {"status": "build failed"}}},
            "lockdep": {"cases": {"spin": {"on_ns": 20.0, "off_ns": 12.0,
                                           "overhead_ns": 8.0}}},
            "failures": ["speed zbud rep 1: exit 1: FAILED: verification"],
            "timings": {"build": 3.0, "total": 75.0},
        }
        text = bench.format_report(report)
        self.assertIn("CPU X", text)
        self.assertIn("the machine was busy", text)
        self.assertIn("zsmalloc", text)
        self.assertIn("+3.0%", text)           # density
        self.assertIn("formula +2.9%", text)   # the kernel formula beside it
        self.assertIn("kernel +2.2%", text)
        self.assertIn("50 (0.50x)", text)      # speed and ratio
        self.assertIn("1.00M", text)           # trivial target
        self.assertIn("900 (70k ops)", text)
        self.assertIn("build failed", text)
        self.assertIn("2k [finding]", text)
        self.assertIn("MET", text)
        self.assertIn("FAILURES", text)
        self.assertIn("total 1m15s", text)
        # The trivial target comes first among the fuzz rows.
        fuzz_rows = text.split("Fuzzing:")[1].splitlines()
        self.assertTrue(fuzz_rows[3].startswith(bench.TRIVIAL))


if __name__ == "__main__":
    unittest.main()
