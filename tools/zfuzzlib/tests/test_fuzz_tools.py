# SPDX-License-Identifier: GPL-2.0-only
"""Tests of fuzz, repro, explain and corpus: parsing, dedup, resolution, bad input, and one
end-to-end run (an injected bug found by `fuzz` and reproduced by `repro`)."""
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from contextlib import redirect_stderr, redirect_stdout

from zfuzzlib import cli, corpus, explorer, findings, fuzz, repro, targets
from zfuzzlib.common import REPO_ROOT, ZfuzzError

BUG_REPORT = """\
------------[ cut here ]------------
kernel BUG at zpool/zsmalloc.cc:813! obj_malloc: BUG_ON(obj_idx >= cls->objs_per_zspage) CPU: 0 PID: 19707
Call Trace:
    #0 0x56013775f4e0 in (anonymous namespace)::obj_malloc((anonymous namespace)::size_class*, (anonymous namespace)::zspage*, unsigned long) /proc/self/cwd/zpool/zsmalloc.cc
    #1 0x56013775daf6 in zs_malloc(zs_pool*, unsigned long, unsigned int) /proc/self/cwd/zpool/zsmalloc.cc:1265:25
    #2 0x560137745e5c in zfuzz::(anonymous namespace)::ZsSubject::Malloc(unsigned long, unsigned int, unsigned long*, int) /proc/self/cwd/fuzz/api/subject.cc:187:23
    #3 0x56013773ed21 in operator() /proc/self/cwd/fuzz/api/program.cc:354:45
---[ end trace ]---
==19707== ERROR: libFuzzer: deadly signal
    #0 0x5601376fd891 in __sanitizer_print_stack_trace (/x/zsmalloc_api_fuzz_libfuzzer+0x19b891)
    #1 0x560137652858 in fuzzer::PrintStackTrace() crtstuff.c
    #6 0x7f86eec44471 in abort stdlib/abort.c:79:7
"""

ASAN_REPORT = """\
=================================================================
==4242==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x602000000{addr} at pc 0x55 bp 0x7ff sp 0x7fe
WRITE of size 8 at 0x602000000{addr} thread T0
    #0 0x55d0 in __asan_memcpy (/x/bin+0x1)
    #1 0x55d1 in zs_unmap_object(zs_pool*, unsigned long) /proc/self/cwd/zpool/zsmalloc.cc:{line}:7
    #2 0x55d2 in zfuzz::(anonymous namespace)::ZsSubject::Unmap(unsigned long) /proc/self/cwd/fuzz/api/subject.cc:200:3
    #3 0x55d3 in zfuzz::RunProgram(unsigned char const*, unsigned long) /proc/self/cwd/fuzz/api/program.cc:679:10
    #4 0x55d4 in LLVMFuzzerTestOneInput /proc/self/cwd/fuzz/zsmalloc_api_fuzz.cc:14:3

0x602000000{addr} is located 0 bytes after 16-byte region
allocated by thread T0 here:
    #0 0x55e0 in malloc (/x/bin+0x2)
"""

UBSAN_REPORT = """\
zpool/zbud.cc:311:22: runtime error: shift exponent 70 is too large for 64-bit type 'unsigned long'
    #0 0x1 in num_free_chunks(zbud_header*) /proc/self/cwd/zpool/zbud.cc:311:22
    #1 0x2 in zbud_alloc /proc/self/cwd/zpool/zbud.cc:400:9
SUMMARY: UndefinedBehaviorSanitizer: undefined-behavior zpool/zbud.cc:311:22
"""

WARN_REPORT = """\
------------[ cut here ]------------
WARNING: CPU: 2 PID: 77 at zpool/zsmalloc.cc:1500 zs_map_object: nested zs_map_object on CPU 2 (handle 0x7f00 while 0x7f08 is mapped)
Call Trace:
    #0 0x10 in zs_map_object /proc/self/cwd/zpool/zsmalloc.cc:1500:3
    #1 0x11 in Map /proc/self/cwd/fuzz/api/subject.cc:220:3
---[ end trace ]---
"""

FINDING_REPORT = """\
zfuzz: FINDING at fuzz/api/program.cc:572: zsmalloc: validator: class 3264: handle 0x7f55ee130000 records size 3268, not of this class
==22264== ERROR: libFuzzer: deadly signal
    #6 0x7f in abort stdlib/abort.c:79:7
    #7 0x55 in zfuzz::Fail(char const*) /proc/self/cwd/fuzz/api/program.cc:30:3
"""


def quiet(fn, *args, **kwargs):
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        result = fn(*args, **kwargs)
    return result, out.getvalue(), err.getvalue()


class ReportParsingTest(unittest.TestCase):
    def test_kernel_bug(self):
        r = findings.parse_report(BUG_REPORT)
        self.assertEqual(r["kind"], "BUG in obj_malloc")
        self.assertEqual(r["frames"], ["obj_malloc", "zs_malloc", "zfuzz::ZsSubject::Malloc"])
        self.assertEqual(r["location"], "zpool/zsmalloc.cc:1265")

    def test_asan_skips_runtime_frames_and_ignores_addresses(self):
        a = findings.parse_report(ASAN_REPORT.format(addr="010", line=1400))
        b = findings.parse_report(ASAN_REPORT.format(addr="0a0", line=1400))
        self.assertEqual(a["kind"], "ASan heap-buffer-overflow WRITE 8")
        self.assertEqual(a["frames"][0], "zs_unmap_object")
        self.assertEqual(len(a["frames"]), 3)
        self.assertEqual(findings.crash_state(a), findings.crash_state(b))

    def test_ubsan(self):
        r = findings.parse_report(UBSAN_REPORT)
        self.assertTrue(r["kind"].startswith("UBSan shift exponent N is too large"), r["kind"])
        self.assertEqual(r["frames"], ["num_free_chunks", "zbud_alloc"])

    def test_warn_message_numbers_do_not_split_states(self):
        r = findings.parse_report(WARN_REPORT)
        self.assertEqual(r["kind"], "WARN in zs_map_object: nested zs_map_object on CPU N (handle "
                         "N while")
        other = WARN_REPORT.replace("CPU 2", "CPU 3").replace("0x7f08", "0x9f08")
        self.assertEqual(findings.crash_state(r),
                         findings.crash_state(findings.parse_report(other)))

    def test_harness_finding(self):
        r = findings.parse_report(FINDING_REPORT)
        self.assertTrue(r["kind"].startswith("FINDING zsmalloc: validator: class N: handle N"))
        self.assertEqual(r["frames"], ["zfuzz::Fail"])

    def test_different_bugs_different_states(self):
        states = {findings.crash_state(findings.parse_report(t)) for t in
                  (BUG_REPORT, ASAN_REPORT.format(addr="0", line=1), UBSAN_REPORT, WARN_REPORT)}
        self.assertEqual(len(states), 4)

    def test_garbage_report(self):
        r = findings.parse_report("segfault? who knows\n")
        self.assertEqual(r["kind"], "unknown crash")
        self.assertEqual(r["frames"], [])


class FindingStoreTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="zfuzz-test-")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def _input(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_one_reproducer_per_state(self):
        fdir = os.path.join(self.dir, "findings")
        meta = {"target": "zsmalloc_api_fuzz", "engine": "libfuzzer", "sanitizer": "asan"}
        d1, new1 = findings.write_finding(fdir, self._input("a", b"\x01\x02"), BUG_REPORT, meta)
        d2, new2 = findings.write_finding(fdir, self._input("b", b"\x03"), BUG_REPORT, meta)
        d3, new3 = findings.write_finding(fdir, self._input("c", b"\x04"), UBSAN_REPORT, meta)
        self.assertTrue(new1)
        self.assertFalse(new2)
        self.assertTrue(new3)
        self.assertEqual(d1, d2)
        listed = findings.list_findings(fdir)
        self.assertEqual(len(listed), 2)
        bug = [f for f in listed if f["kind"] == "BUG in obj_malloc"][0]
        self.assertEqual(bug["duplicates"], 1)
        self.assertEqual(bug["target"], "zsmalloc_api_fuzz")
        with open(bug["path"], "rb") as f:
            self.assertEqual(f.read(), b"\x01\x02")
        self.assertEqual(findings.read_metadata(bug["path"])["sha1"], findings.sha1_of(bug["path"]))

    def test_corrupt_metadata_is_a_one_line_error(self):
        path = self._input("crash-x", b"abc")
        with open(path + ".json", "w") as f:
            f.write("{not json")
        with self.assertRaises(ZfuzzError) as ctx:
            findings.read_metadata(path)
        self.assertIn("corrupt metadata", str(ctx.exception))


FUZZER_LOG = """\
$ /x/zpool_concurrent_fuzz -max_total_time=60 corpus
INFO: Running with entropic power schedule (0xFF, 100).
INFO: Seed: 1234
#2\tINITED cov: 80 ft: 90 corp: 1/1b exec/s: 0 rss: 30Mb
#900\tNEW    cov: 812 ft: 2345 corp: 120/4567b lim: 40 exec/s: 1234 rss: 50Mb L: 3/4 MS: 1 Shuffle-
------------[ cut here ]------------
kernel BUG at ./zpool/kernel/list.h:50! remove: BUG_ON(!n->linked())
Call Trace:
    #0 0x10 in kc::ListHead::remove() /proc/self/cwd/zpool/kernel/list.h:50:5
    #1 0x11 in zs_free /proc/self/cwd/zpool/zsmalloc.cc:1400:3
==77== ERROR: libFuzzer: deadly signal
MS: 2 CopyPart-ChangeBit-; base unit: 0123
artifact_prefix='/o/artifacts/'; Test unit written to /o/artifacts/crash-aaaa
#901\tNEW    cov: 813 ft: 2346 corp: 121/4568b lim: 40 exec/s: 1234 rss: 50Mb L: 3/4 MS: 1 Shuffle-
==78==ERROR: LeakSanitizer: detected memory leaks
Direct leak of 8 byte(s) in 1 object(s) allocated from:
    #0 0x20 in malloc
    #1 0x21 in kc::Leaky() /proc/self/cwd/zpool/kernel/slab.cc:9:3
INFO: to ignore leaks on libFuzzer side use -detect_leaks=0.
MS: 1 Shuffle-; base unit: 4567
artifact_prefix='/o/artifacts/'; Test unit written to /o/artifacts/leak-bbbb
"""


class FuzzerLogTest(unittest.TestCase):
    def test_the_report_of_each_artifact(self):
        crash = findings.report_from_log(FUZZER_LOG, "crash-aaaa")
        self.assertTrue(crash.startswith("------------[ cut here ]"), crash)
        self.assertNotIn("NEW", crash)
        self.assertTrue(crash.rstrip().endswith("crash-aaaa"))
        parsed = findings.parse_report(crash)
        self.assertEqual(parsed["kind"], "BUG in remove")
        self.assertEqual(parsed["frames"], ["kc::ListHead::remove", "zs_free"])
        leak = findings.report_from_log(FUZZER_LOG, "leak-bbbb")
        self.assertIn("INFO: to ignore leaks", leak)  # an INFO line inside a report stays
        self.assertEqual(findings.parse_report(leak)["kind"], "LSan leak")
        self.assertIsNone(findings.report_from_log(FUZZER_LOG, "crash-cccc"))

    def test_a_failure_among_the_first_inputs(self):
        log = ("$ /x/t corpus\nINFO: Seed: 1\nINFO: Loaded 1 modules\n"
               "==9==ERROR: AddressSanitizer: heap-use-after-free on address 0x1\n"
               "    #0 0x1 in zs_map_object /proc/self/cwd/zpool/zsmalloc.cc:1:1\n"
               "artifact_prefix='./'; Test unit written to ./crash-dddd\n")
        report = findings.report_from_log(log, "crash-dddd")
        self.assertTrue(report.startswith("==9==ERROR: AddressSanitizer"), report)

    def test_kinds_from_artifact_names(self):
        name = findings.kind_from_artifact_name
        self.assertEqual(name("id:000003,sig:06,src:000001,time:10,execs:9,op:havoc,rep:2"),
                         "AFL++ crash (signal 6, SIGABRT)")
        self.assertEqual(name("id:000000,sig:11,src:000000,op:flip1,pos:0"),
                         "AFL++ crash (signal 11, SIGSEGV)")
        self.assertEqual(name("id:000001,src:000002,time:5,execs:7,op:havoc,rep:4"),
                         "AFL++ timeout (hang)")
        self.assertEqual(name("timeout-abcd"), "libFuzzer timeout")
        self.assertEqual(name("oom-abcd"), "libFuzzer out-of-memory")
        self.assertEqual(name("leak-abcd"), "LSan leak")
        self.assertIsNone(name("crash-abcd"))

    def test_a_kind_only_the_name_tells(self):
        d = tempfile.mkdtemp()
        try:
            path = os.path.join(d, "id:000000,sig:06,src:000000,op:havoc")
            with open(path, "wb") as f:
                f.write(b"x")
            _, new = findings.write_finding(os.path.join(d, "f"), path, "(nothing printed)\n",
                                            {"target": "t"}, "AFL++ crash (signal 6, SIGABRT)")
            self.assertTrue(new)
            self.assertEqual(findings.list_findings(os.path.join(d, "f"))[0]["kind"],
                             "AFL++ crash (signal 6, SIGABRT)")
        finally:
            shutil.rmtree(d)


@unittest.skipUnless(shutil.which("clang++-19"), "needs clang++-19 (tools/zfuzz setup)")
class NonReplayingFindingTest(unittest.TestCase):
    """A real libFuzzer target that fails only once (tests/flaky_target.cc): its finding keeps
    the report the fuzzer printed, is marked not reproduced and points at the log."""

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="zfuzz-flaky-")
        cls.binary = os.path.join(cls.dir, "flaky_target")
        src = os.path.join(os.path.dirname(__file__), "flaky_target.cc")
        subprocess.run(["clang++-19", "-std=c++20", "-g", "-O1", "-fsanitize=fuzzer,address",
                        src, "-o", cls.binary], check=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def campaign(self, name, env_extra):
        """Runs the target as a campaign's Instance does; returns (artifact, logs dir, cwd)."""
        work = os.path.join(self.dir, name)
        for sub in ("corpus", "artifacts", "logs", "seeds"):
            os.makedirs(os.path.join(work, sub))
        with open(os.path.join(work, "seeds", "bug"), "wb") as f:
            f.write(b"BUG!")
        env = targets.fuzz_env(env_extra)
        argv = [self.binary, "-max_total_time=10", "-print_final_stats=1",
                "-artifact_prefix=" + os.path.join(work, "artifacts") + "/",
                os.path.join(work, "corpus"), os.path.join(work, "seeds")]
        with open(os.path.join(work, "logs", "libfuzzer-1-1.log"), "wb") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            proc = subprocess.run(argv, cwd=work, stdout=log, stderr=subprocess.STDOUT, env=env)
        self.assertNotEqual(proc.returncode, 0)
        artifacts = fuzz.list_artifacts(work)
        self.assertEqual(len(artifacts), 1, artifacts)
        return artifacts[0], os.path.join(work, "logs"), work

    def test_a_finding_that_does_not_replay(self):
        marker = os.path.join(self.dir, "failed-once")
        os.environ["FLAKY_MARKER"] = marker  # the replays inherit it, as from fuzz_env()
        try:
            artifact, logs, work = self.campaign("once", {})
            report, fallback, meta = fuzz.examine_artifact(self.binary, "libfuzzer", artifact,
                                                           logs, cwd=work, tries=3)
        finally:
            del os.environ["FLAKY_MARKER"]
        self.assertFalse(meta["reproduced"])
        self.assertEqual(meta["replayed"], "0/3")
        self.assertEqual(meta["report_from"], "fuzzer log")
        self.assertEqual(meta["log"], os.path.join(logs, "libfuzzer-1-1.log"))
        self.assertIn("did not fail again in 3 replays", report)
        fdir = os.path.join(work, "findings")
        meta.update({"target": "flaky_target", "time": findings.now()})
        directory, new = findings.write_finding(fdir, artifact, report, meta, fallback)
        self.assertTrue(new)
        kept = findings.list_findings(fdir)[0]
        self.assertEqual(kept["kind"], "BUG in remove")
        self.assertEqual(kept["frames"][0], "remove_node")
        self.assertFalse(kept["reproduced"])
        with open(kept["path"] + ".txt") as f:
            self.assertIn("kernel BUG at ./zpool/kernel/list.h:50!", f.read())
        data = {"targets": [], "merged_into_corpus": False,
                "findings": [{k: kept.get(k) for k in ("state_id", "target", "kind", "frames",
                                                       "path", "reproduced", "replayed", "log")}]}
        _, out, _ = quiet(fuzz.print_summary, data, [directory])
        self.assertIn("BUG in remove", out)
        self.assertIn("at remove_node", out)
        self.assertIn("NOT REPRODUCED: 0 of 3 replays failed", out)
        self.assertIn("libfuzzer-1-1.log", out)
        self.assertNotIn("unknown crash", out)

    def test_a_finding_that_replays(self):
        artifact, logs, work = self.campaign("always", {})
        report, _, meta = fuzz.examine_artifact(self.binary, "libfuzzer", artifact, logs,
                                                cwd=work, tries=3)
        self.assertTrue(meta["reproduced"])
        self.assertEqual(meta["replayed"], "1/1")
        self.assertIn("failed again on replay 1 of 3", report)
        self.assertEqual(findings.parse_report(report)["kind"], "BUG in remove")


EXPLORER_OUTPUT = """\
explore: 53 scenario(s), preemption bounds 0..2 in passes, sleep sets
explore: pass at bound 0 done: 57 executions so far, 0.1s

== FAILED: zsmalloc/registered/zpool-create|unregister (create racing unregister) at preemption bound 1, after 6.87s ==
not linearizable: this execution observed
    t0: zpool-create=ok; t1: unregister=rc0; ...
== interleaving (1 preemptions) ==
t0                                                        t1
GetDriver zpool.cc:159 lock-acquire
replay: explore --replay 'zsmalloc/registered/zpool-create|unregister' --schedule 0x5.1x3.0x40

------------[ cut here ]------------
kernel BUG at ./zpool/kernel/list.h:51! remove: BUG_ON(!n->linked()) CPU: 0 PID: 1
== schedule (systematic, 12 points, 2 preemptions) ==
t0                                                        t1
schedule: 0x1.1x8.0x2
explore: FAILED (crash) in scenario 'zbud/buddies/free1|reclaim' at preemption bound 2: replay it with explore --replay 'zbud/buddies/free1|reclaim' --schedule <the schedule line above>
"""


class ExplorerOutputTest(unittest.TestCase):
    def test_oracle_failures_and_crashes_with_their_schedules(self):
        found = explorer.parse_output(EXPLORER_OUTPUT)
        self.assertEqual([(f["scenario"], f["bound"], f["kind"], f["schedule"]) for f in found],
                         [("zsmalloc/registered/zpool-create|unregister", 1, "oracle",
                           "0x5.1x3.0x40"),
                          ("zbud/buddies/free1|reclaim", 2, "crash", "0x1.1x8.0x2")])
        self.assertIn("not linearizable", found[0]["report"])
        self.assertIn("kernel BUG at", found[1]["report"])

    def test_bad_arguments(self):
        for argv, needle in ((["explore", "--bound", "17"], "--bound"),
                             (["explore", "--time", "soon"], "--time"),
                             (["explore", "--replay", "x"], "--replay and --schedule"),
                             (["explore", "--sanitizer", "nosan", "--replay", "x", "--schedule",
                               "0x1"], "--sanitizer")):
            out, err = io.StringIO(), io.StringIO()
            with redirect_stdout(out), redirect_stderr(err):
                code = cli.main(argv + ["--out", tempfile.mkdtemp()])
            self.assertEqual(code, 2, (argv, err.getvalue()))
            self.assertIn(needle, err.getvalue(), argv)


class ScheduledFindingTest(unittest.TestCase):
    CALLS = ["  pool0 = zs_create_pool(\"pool0\")",
             "  [t0] zs_free(pool0, h0)",
             "  [t0] ~~ preempted at percpu_ref.h:68 (atomic); t1 runs ~~",
             "  [t1] zs_compact(pool0) = 1",
             "  ~~ finished; t0 runs ~~"]

    def test_columns(self):
        cols = repro.thread_columns(self.CALLS, width=40)
        self.assertEqual(cols[0], "t0" + " " * 38 + "t1")
        self.assertEqual(cols[1], 'pool0 = zs_create_pool("pool0")')
        self.assertEqual(cols[2], "zs_free(pool0, h0)")
        self.assertTrue(cols[4].startswith(" " * 40 + "zs_compact"), cols[4])
        self.assertTrue(cols[3].endswith("..."), cols[3])  # cut to its column
        self.assertEqual(repro.thread_columns(["  [t0] a", "  b"]), [])

    def test_preemptions_of_a_report(self):
        self.assertEqual(repro.preemptions_of("x\n== schedule (pct, 495 points, 4 preemptions) ==\n"),
                         4)
        self.assertIsNone(repro.preemptions_of("kernel BUG at x"))


class CampaignUnitsTest(unittest.TestCase):
    def test_the_tsan_unit(self):
        self.assertEqual(fuzz.unit_target("zpool_concurrent_fuzz+tsan"), "zpool_concurrent_fuzz")
        self.assertEqual(fuzz.unit_sanitizer("zpool_concurrent_fuzz+tsan", "asan"), "tsan")
        self.assertEqual(fuzz.unit_sanitizer("zbud_api_fuzz", "asan"), "asan")
        self.assertEqual(fuzz.unit_env("zpool_concurrent_fuzz+tsan"),
                         {"ZFUZZ_CONCURRENT_MODE": "free"})
        self.assertIsNone(fuzz.unit_env("zpool_concurrent_fuzz"))

    def campaign(self, *extra):
        parser = cli._build_parser()
        return fuzz.Campaign(parser.parse_args(["fuzz", "--out", tempfile.mkdtemp()] + list(extra)))

    def test_units_of_a_campaign(self):
        self.assertIn(fuzz.TSAN_UNIT, self.campaign().units)
        self.assertNotIn(fuzz.TSAN_UNIT, self.campaign("--no-tsan").units)
        self.assertNotIn(fuzz.TSAN_UNIT, self.campaign("--sanitizer", "tsan").units)
        self.assertNotIn(fuzz.TSAN_UNIT, self.campaign("--engine", "afl").units)
        self.assertNotIn(fuzz.TSAN_UNIT, self.campaign("zbud_api_fuzz").units)

    def test_from_empty_refuses_an_old_corpus_and_uses_no_seeds(self):
        out = tempfile.mkdtemp()
        parser = cli._build_parser()
        c = fuzz.Campaign(parser.parse_args(["fuzz", "zbud_api_fuzz", "--from-empty", "--out",
                                             out]))
        self.assertEqual(c.seed_dirs("zbud_api_fuzz"), [])
        os.makedirs(os.path.join(out, "targets", "zbud_api_fuzz", "corpus"))
        with open(os.path.join(out, "targets", "zbud_api_fuzz", "corpus", "x"), "wb") as f:
            f.write(b"x")
        with self.assertRaises(ZfuzzError) as ctx:
            fuzz.Campaign(parser.parse_args(["fuzz", "zbud_api_fuzz", "--from-empty", "--out",
                                             out]))
        self.assertIn("--from-empty", str(ctx.exception))


class StatusParsingTest(unittest.TestCase):
    def test_libfuzzer_line(self):
        s = fuzz.parse_libfuzzer_status("#123456\tNEW    cov: 812 ft: 2345 corp: 120/4567b "
                                        "lim: 40 exec/s: 1234 rss: 50Mb L: 3/4 MS: 1 Shuffle-")
        self.assertEqual(s, {"execs": 123456, "cov": 812, "ft": 2345, "corpus": 120,
                             "exec_s": 1234})
        self.assertIsNone(fuzz.parse_libfuzzer_status("INFO: Seed: 1"))
        self.assertIsNone(fuzz.parse_libfuzzer_status("#notanumber"))

    def test_afl_plot_data(self):
        d = tempfile.mkdtemp()
        try:
            path = os.path.join(d, "plot_data")
            with open(path, "w") as f:
                f.write("# relative_time, cycles_done, cur_item, corpus_count, pending_total, "
                        "pending_favs, map_size, saved_crashes, saved_hangs, max_depth, "
                        "execs_per_sec, total_execs, edges_found\n")
                f.write("5, 0, 1, 10, 9, 2, 1.20%, 0, 0, 2, 812.33, 4000, 300\n")
                f.write("10, 0, 3, 14, 9, 2, 1.40%, 0, 0, 2, 900.10, 9000, 350\n")
            self.assertEqual(fuzz.parse_afl_plot(path), {"corpus": 14, "cov": 350, "exec_s": 900,
                                                         "execs": 9000, "map": "1.40%"})
            self.assertIsNone(fuzz.parse_afl_plot(os.path.join(d, "missing")))
        finally:
            shutil.rmtree(d)


class RotationTest(unittest.TestCase):
    def test_instances(self):
        self.assertEqual(fuzz.instances_for(1, 2, last=False), 1)
        self.assertEqual(fuzz.instances_for(1, 2, last=True), 2)   # no idle core at the end
        self.assertEqual(fuzz.instances_for(3, 2, last=False), 2)  # within the free jobs
        self.assertEqual(fuzz.instances_for(1, 0, last=True), 1)   # always at least one


class TargetsTest(unittest.TestCase):
    def test_targets_from_fuzz_build(self):
        known = targets.list_targets()
        for t in ("zbud_api_fuzz", "zsmalloc_api_fuzz", "zpool_api_fuzz", "zpool_misuse_fuzz",
                  "zpool_concurrent_fuzz", "zpool_lifecycle_fuzz", "kernel_api_fuzz"):
            self.assertIn(t, known)
        self.assertEqual(known["zpool_concurrent_fuzz"]["max_len"], 2048)
        available = lambda: (True, "Linux 6.12.118 from Debian linux-source-6.12")
        self.assertEqual(targets.check_targets([], known, available), list(known))
        self.assertEqual(targets.check_targets(["zbud_api_fuzz", "zbud_api_fuzz"], known),
                         ["zbud_api_fuzz"])

    def test_upstream_targets_need_the_kernel_files(self):
        known = targets.list_targets()
        upstream = [t for t in known if known[t]["upstream"]]
        self.assertEqual(upstream, ["upstream_api_fuzz", "upstream_diff_fuzz"])
        missing = lambda: (False, "no kernel source: /usr/src/linux-source-6.12.tar.xz is missing")
        everything = targets.check_targets([], known, missing)
        self.assertEqual(everything, [t for t in known if t not in upstream])
        with self.assertRaises(ZfuzzError) as ctx:
            targets.check_targets(["upstream_diff_fuzz"], known, missing)
        self.assertEqual(ctx.exception.exit_code, 2)
        self.assertIn("linux-source-6.12.tar.xz is missing", str(ctx.exception))

    def test_bad_names(self):
        with self.assertRaises(ZfuzzError) as ctx:
            targets.check_targets(["zbud_fuzz"])
        self.assertEqual(ctx.exception.exit_code, 2)
        self.assertIn("unknown target 'zbud_fuzz'", str(ctx.exception))
        with self.assertRaises(ZfuzzError):
            targets.check_pair("afl", "msan")
        with self.assertRaises(ZfuzzError):
            targets.check_pair("libfuzzer", "hwasan")
        with self.assertRaises(ZfuzzError):
            targets.check_bug("no_such_bug")

    def test_bug_builds_get_their_own_output_tree(self):
        flags = targets.bazel_flags("libfuzzer", "asan", "class_index")
        self.assertIn("--config=asan-libfuzzer", flags)
        self.assertIn("--define=zfuzz_bug=class_index", flags)
        self.assertIn("--platform_suffix=asan-libfuzzer-bug-class_index", flags)
        self.assertNotIn("--define=zfuzz_bug=class_index", targets.bazel_flags("libfuzzer", "asan"))
        self.assertIn("--config=ubsan", targets.bazel_flags("replay", "ubsan"))


class ResolveTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="zfuzz-test-")
        self.known = targets.list_targets()

    def tearDown(self):
        shutil.rmtree(self.dir)

    def _file(self, rel, data=b"\x01\x02\x03", meta=None):
        path = os.path.join(self.dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        if meta is not None:
            with open(path + ".json", "w") as f:
                json.dump(meta, f)
        return path

    def test_from_metadata(self):
        path = self._file("crash-1", meta={"target": "zbud_api_fuzz", "sanitizer": "ubsan",
                                           "bug": "under_reclaim"})
        self.assertEqual(repro.resolve(path, None, None, None, self.known)[:3],
                         ("zbud_api_fuzz", "ubsan", "under_reclaim"))

    def test_file_of_another_target(self):
        path = self._file("crash-2", meta={"target": "zbud_api_fuzz", "sanitizer": "asan"})
        with self.assertRaises(ZfuzzError) as ctx:
            repro.resolve(path, "zsmalloc_api_fuzz", None, None, self.known)
        self.assertIn("is a finding of zbud_api_fuzz, not zsmalloc_api_fuzz", str(ctx.exception))

    def test_from_path_and_default_sanitizer(self):
        path = self._file("targets/zpool_misuse_fuzz/artifacts/crash-3")
        self.assertEqual(repro.resolve(path, None, None, None, self.known)[:3],
                         ("zpool_misuse_fuzz", "asan", None))
        afl = self._file("targets/zpool_api_fuzz/afl/main/crashes/id:000000,sig:06")
        self.assertEqual(repro.resolve(afl, None, "ubsan", None, self.known)[:2],
                         ("zpool_api_fuzz", "ubsan"))

    def test_unknown_target_asks_or_fails(self):
        path = self._file("crash-4")
        with self.assertRaises(ZfuzzError) as ctx:
            repro.resolve(path, None, None, None, self.known, ask=lambda what, choices: None)
        self.assertIn("pass --target", str(ctx.exception))
        asked = repro.resolve(path, None, None, None, self.known,
                              ask=lambda what, choices: "kernel_api_fuzz")
        self.assertEqual(asked[0], "kernel_api_fuzz")

    def test_bad_files(self):
        with self.assertRaises(ZfuzzError):
            repro.check_input(os.path.join(self.dir, "missing"))
        with self.assertRaises(ZfuzzError):
            repro.check_input(self.dir)
        empty = self._file("empty", b"")
        with self.assertRaises(ZfuzzError) as ctx:
            repro.check_input(empty)  # explain: nothing to explain
        self.assertIn("is empty", str(ctx.exception))
        repro.check_input(empty, allow_empty=True)  # repro: an empty input can fail


class MinimizeAndRegressionTest(unittest.TestCase):
    def test_ddmin_keeps_the_failure(self):
        data = bytes(range(200))
        calls = []

        def fails(d):
            calls.append(d)
            return b"\x10\x11" in d and d.count(b"\x50") == 1

        out = repro.ddmin(data, fails, deadline=float("inf"))
        self.assertTrue(fails(out))
        self.assertEqual(sorted(out), sorted(b"\x10\x11\x50"))
        self.assertLess(len(calls), 400)

    def test_ddmin_respects_the_deadline(self):
        self.assertEqual(repro.ddmin(b"abcdef", lambda d: True, deadline=0), b"abcdef")

    def test_regression_file_and_gtest_case(self):
        root = tempfile.mkdtemp(prefix="zfuzz-test-corpus-")
        try:
            src = os.path.join(root, "input")
            with open(src, "wb") as f:
                f.write(b"\x0a\x01\xff")
            dest, data = repro.add_regression(root, "zsmalloc_api_fuzz", "class-index", src)
            self.assertEqual(dest, os.path.join(root, "regressions", "zsmalloc_api_fuzz",
                                                "class-index"))
            # Same name, same bytes: fine. Same name, other bytes: refused, file untouched.
            repro.add_regression(root, "zsmalloc_api_fuzz", "class-index", src)
            with open(src, "wb") as f:
                f.write(b"\x00")
            with self.assertRaises(ZfuzzError):
                repro.add_regression(root, "zsmalloc_api_fuzz", "class-index", src)
            with open(dest, "rb") as f:
                self.assertEqual(f.read(), b"\x0a\x01\xff")
            for bad in ("../escape", ".hidden", "a/b", ""):
                with self.assertRaises(ZfuzzError):
                    repro.add_regression(root, "zsmalloc_api_fuzz", bad, src)
            case = repro.gtest_case("zsmalloc_api_fuzz", "class-index", data,
                                    ["  h0 = zs_malloc(pool1, 77, GFP_KERNEL)"])
            self.assertIn("TEST(ZsmallocApiFuzzRegression, ClassIndex)", case)
            self.assertIn("0x0a, 0x01, 0xff,", case)
            self.assertIn("//   h0 = zs_malloc(pool1, 77, GFP_KERNEL)", case)
            self.assertIn("LLVMFuzzerTestOneInput(kInput, sizeof(kInput))", case)
        finally:
            shutil.rmtree(root)


class CorpusStatsTest(unittest.TestCase):
    def test_stats_flag_what_needs_care(self):
        d = tempfile.mkdtemp(prefix="zfuzz-test-")
        try:
            import hashlib
            good = b"\x01\x02\x03"
            with open(os.path.join(d, hashlib.sha1(good).hexdigest()), "wb") as f:
                f.write(good)
            with open(os.path.join(d, "copy"), "wb") as f:
                f.write(good)
            with open(os.path.join(d, "big"), "wb") as f:
                f.write(b"x" * 50)
            s = corpus.stats_of(d, max_len=10)
            self.assertEqual((s["inputs"], s["bytes"], s["min"], s["max"]), (3, 56, 3, 50))
            self.assertEqual(s["duplicates"], 1)
            self.assertEqual(s["not_sha1_named"], 2)
            self.assertEqual(s["over_max_len"], 1)
        finally:
            shutil.rmtree(d)

    def test_checked_in_corpora_are_healthy(self):
        known = targets.list_targets()
        for t, info in known.items():
            s = corpus.stats_of(os.path.join(REPO_ROOT, "corpus", t), info["max_len"])
            self.assertGreater(s["inputs"], 0, t)
            self.assertEqual(s["over_max_len"], 0, t)
            self.assertEqual(s["duplicates"], 0, t)


class CliErrorsTest(unittest.TestCase):
    def run_cli(self, *argv):
        return quiet(cli.main, list(argv))

    def test_one_line_errors_and_exit_codes(self):
        for argv, needle in (
                (["fuzz", "no_such_fuzz"], "unknown target 'no_such_fuzz'"),
                (["fuzz", "--time", "soon"], "--time: bad duration"),
                (["fuzz", "--jobs", "0"], "--jobs must be at least 1"),
                (["fuzz", "--sanitizer", "msan", "--engine", "afl"], "AFL++ builds support"),
                (["fuzz", "--out", os.path.join(REPO_ROOT, "corpus", "x")], "must not be inside"),
                (["repro", "/nonexistent/crash-1"], "no such file"),
                (["explain", "/nonexistent/crash-1", "--target", "zbud_api_fuzz"],
                 "no such file"),
                (["corpus", "stats", "nope"], "unknown target 'nope'"),
                (["corpus", "minimize", "zbud_api_fuzz", "--into",
                  os.path.join(REPO_ROOT, "corpus", "zbud_api_fuzz")], "outside corpus")):
            code, out, err = self.run_cli(*argv)
            self.assertEqual(code, 2, argv)
            lines = [l for l in err.splitlines() if l.strip()]
            self.assertEqual(len(lines), 1, (argv, err))
            self.assertIn(needle, lines[0], argv)
            self.assertTrue(lines[0].startswith("zfuzz: error: "), lines[0])


@unittest.skipUnless(shutil.which("bazel") and os.environ.get("ZFUZZ_SKIP_E2E") != "1",
                     "needs bazel (set up with tools/zfuzz setup)")
class EndToEndTest(unittest.TestCase):
    """An injected bug: `fuzz` finds it, `repro` reproduces it with the right call lines, and
    the checked-in corpus is untouched throughout."""

    def test_fuzz_finds_and_repro_reproduces(self):
        work = tempfile.mkdtemp(prefix="zfuzz-e2e-")
        corpus_dir = os.path.join(REPO_ROOT, "corpus", "zsmalloc_api_fuzz")
        before = {n: findings.sha1_of(os.path.join(corpus_dir, n)) for n in os.listdir(corpus_dir)}
        tool = os.path.join(REPO_ROOT, "tools", "zfuzz")
        try:
            proc = subprocess.run([sys.executable, tool, "fuzz", "zsmalloc_api_fuzz",
                                   "--inject-bug", "class_index", "--time", "20s", "--jobs", "1",
                                   "--out", work], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True, cwd=REPO_ROOT)
            self.assertEqual(proc.returncode, 1, proc.stdout[-3000:])
            with open(os.path.join(work, "summary.json")) as f:
                summary = json.load(f)
            # The off-by-one class index is caught either by zsmalloc's own BUG_ON when an
            # object lands past its zspage, or first by the harness's check of the huge-class
            # watermark (which goes through the same class lookup).
            self.assertFalse(summary["merged_into_corpus"])
            self.assertTrue(summary["findings"], proc.stdout[-3000:])
            for finding in summary["findings"]:
                self.assertEqual(finding["target"], "zsmalloc_api_fuzz")
                self.assertTrue(finding["kind"] == "BUG in obj_malloc" or
                                finding["kind"].startswith("FINDING zsmalloc: validator"),
                                finding["kind"])
            finding = summary["findings"][0]

            proc = subprocess.run([sys.executable, tool, "repro", finding["path"], "--out", work],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  cwd=REPO_ROOT)
            self.assertEqual(proc.returncode, 0, proc.stdout[-3000:])
            self.assertIn("reproduced 1/1: " + finding["kind"], proc.stdout)
            self.assertIn("injected bug class_index", proc.stdout)
            self.assertIn("crash state: " + " <- ".join(finding["frames"]), proc.stdout)
            self.assertRegex(proc.stdout, r"\n  pool\d = zs_create_pool\(\"pool\d\"\)")
            self.assertRegex(proc.stdout, r"== operations \([1-9]\d* call lines\) ==")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        after = {n: findings.sha1_of(os.path.join(corpus_dir, n)) for n in os.listdir(corpus_dir)}
        self.assertEqual(before, after)


if __name__ == "__main__":
    unittest.main()
