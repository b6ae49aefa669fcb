# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz test`: the whole test suite, every sanitizer config, plus engine smoke runs.

For each config: `bazel test --config=<config> //...` (unit tests and the replay of every fuzz
corpus), results read from Bazel's build event protocol. To keep the cold run short on 2 cores,
one config (ubsan, else the first) also builds the targets that are not tests (benchmarks,
tools), the others pass --build_tests_only; and the _ps16/_cs4 variant tests (tag
zfuzz_variant) run under the --variants configs only (default asan and ubsan: the page-size
and chain-size geometry is what they test, and those two catch its bounds and arithmetic bugs).
The last config, opt-unchecked, is the benchmark's baseline: an optimised build with the misuse
checks compiled out (-DZPOOL_UNCHECKED=1), which runs the library tests only (//zpool/...: a
fuzz corpus holds misuse, which is undefined behaviour without the checks); the misuse tests
skip themselves there. Then the smoke steps: the sample harness built for libFuzzer and for
AFL++ runs for 10 seconds each. Then the tools' own unit tests.
Prints a table (config, passed, failed, time) and a final line `N passed, N failed`; exits
non-zero on any failure.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

from . import setup
from .common import (REPO_ROOT, Stopwatch, ZfuzzError, cache_dir, format_duration, say, tail_of)

SANITIZER_CONFIGS = ["asan", "ubsan", "tsan", "msan"]
UNCHECKED_CONFIG = "opt-unchecked"  # the benchmark's baseline build (.bazelrc)
UNCHECKED_TARGETS = "//zpool/..."   # what it runs when the targets are the default //...
DEFAULT_CONFIGS = SANITIZER_CONFIGS + [UNCHECKED_CONFIG]
VARIANT_CONFIGS = ["asan", "ubsan"]  # default --variants
FULL_BUILD_CONFIG = "ubsan"  # the config that also builds the targets that are not tests
KNOWN_CONFIGS = DEFAULT_CONFIGS + ["asan-ubsan"]
SMOKE_TARGET = "kernel_api_fuzz"
SMOKE_SECONDS = 10


def add_parser(sub):
    p = sub.add_parser(
        "test",
        help="run the whole test suite in every sanitizer config (the README's test command)",
        description="Runs set-up when something is missing, then `bazel test //...` under each "
        "config (default: asan, ubsan, tsan, msan, and opt-unchecked: the checks compiled out, "
        "//zpool/... only), then builds the libFuzzer and AFL++ variants "
        "of a sample harness and runs each for %d seconds, then the tools' unit tests. Prints a "
        "table and `N passed, N failed`; exits 1 on any failure." % SMOKE_SECONDS)
    p.add_argument("--config", default=",".join(DEFAULT_CONFIGS),
                   help="comma-separated configs to test (known: %s; default: %%(default)s)"
                   % ", ".join(KNOWN_CONFIGS))
    p.add_argument("--variants", default=",".join(VARIANT_CONFIGS),
                   help="configs that also run the _ps16 and _cs4 variant tests, comma-separated, "
                   "or 'all' (default: %(default)s)")
    p.add_argument("--no-smoke", action="store_true",
                   help="skip the libFuzzer/AFL++ smoke runs")
    p.add_argument("--no-tools", action="store_true", help="skip the tools' Python unit tests")
    p.add_argument("--targets", default="//...",
                   help="Bazel target patterns to test, space-separated, '-' to exclude "
                   "(default: %(default)s)")
    p.add_argument("--log-dir", default=None,
                   help="where Bazel's output for each step is kept (default: a temporary "
                   "directory, printed)")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="stream Bazel's output instead of keeping it in the log files")
    p.set_defaults(func=run_test)


def parse_configs(text):
    configs = [c.strip() for c in text.split(",") if c.strip()]
    if not configs:
        raise ZfuzzError("--config: no config given (known: %s)" % ", ".join(KNOWN_CONFIGS),
                         exit_code=2)
    for c in configs:
        if c not in KNOWN_CONFIGS:
            raise ZfuzzError("--config: unknown config %r (known: %s)"
                             % (c, ", ".join(KNOWN_CONFIGS)), exit_code=2)
    return configs


def bazel_common_flags():
    """Flags every invocation shares: a disk cache outside the repository, so that a fresh clone
    on the same machine reuses earlier builds."""
    return ["--disk_cache=" + os.path.join(cache_dir(), "bazel-disk")]


def read_bep(path):
    """Test results from a build-event JSON file: {label: status}, plus the build's success."""
    results = {}
    build_ok = None
    aborted = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                event = json.loads(line)
                ident = event.get("id", {})
                if "testSummary" in ident:
                    label = ident["testSummary"].get("label")
                    status = event.get("testSummary", {}).get("overallStatus", "NO_STATUS")
                    results[label] = status
                elif "buildFinished" in ident:
                    build_ok = event.get("finished", {}).get("exitCode", {}).get("code", 1) in (0,)
                elif "targetCompleted" in ident and event.get("aborted"):
                    # SKIPPED: incompatible with this config (an engine binary), not a failure.
                    if event["aborted"].get("reason") != "SKIPPED":
                        aborted.append(ident["targetCompleted"].get("label"))
                elif "targetCompleted" in ident:
                    # proto3 JSON leaves `success: false` out: anything but true is a failure.
                    completed = event.get("completed", {})
                    if completed.get("success") is not True:
                        label = ident["targetCompleted"].get("label")
                        aborted.append(label)
    except (OSError, ValueError) as e:
        raise ZfuzzError("cannot read Bazel's build events %s: %s" % (path, e))
    return results, build_ok, aborted


class Row:
    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.seconds = 0.0
        self.failures = []  # (label or step, detail)


def stage_flags(config, configs, variant_configs):
    """The test-selection flags of one config's stage (see the module's docstring)."""
    flags = []
    checked = [c for c in configs if c != UNCHECKED_CONFIG] or configs
    full = FULL_BUILD_CONFIG if FULL_BUILD_CONFIG in checked else checked[0]
    if config != full:
        flags.append("--build_tests_only")
    if config not in variant_configs:
        flags.append("--test_tag_filters=-zfuzz_variant")
    return flags


def stage_targets(config, targets):
    """The target patterns of one config's stage: the unchecked build runs the library tests
    only, unless the caller named the targets."""
    if config == UNCHECKED_CONFIG and targets.split() == ["//..."]:
        return UNCHECKED_TARGETS
    return targets


def parse_variants(text, configs):
    if text.strip() == "all":
        return list(configs)
    chosen = [c.strip() for c in text.split(",") if c.strip()]
    for c in chosen:
        if c not in KNOWN_CONFIGS:
            raise ZfuzzError("--variants: unknown config %r (known: %s, or all)"
                             % (c, ", ".join(KNOWN_CONFIGS)), exit_code=2)
    return chosen


def run_bazel_tests(config, targets, log_dir, verbose, flags=()):
    row = Row(config)
    watch = Stopwatch()
    bep = os.path.join(log_dir, "%s.bep.json" % config)
    log = os.path.join(log_dir, "%s.log" % config)
    argv = ["bazel", "test", "--config=" + config] + bazel_common_flags() + list(flags) + [
        "--build_event_json_file=" + bep, "--keep_going", "--"] + targets.split()
    say("[%s] bazel test %s%s (log: %s)" % (config, " ".join(list(flags) + [""]), targets, log))
    with open(log, "wb") as out:
        proc = subprocess.run(argv, cwd=REPO_ROOT, stdout=None if verbose else out,
                              stderr=subprocess.STDOUT if not verbose else None)
    row.seconds = watch.seconds()
    results, build_ok, broken = ([], None, [])
    if os.path.exists(bep):
        results, build_ok, broken = read_bep(bep)
    for label, status in sorted(results.items()):
        if status in ("PASSED", "FLAKY"):
            row.passed += 1
        else:
            row.failed += 1
            row.failures.append((label, status))
    tested = set(results)
    for label in broken:
        if label not in tested:
            row.failed += 1
            row.failures.append((label, "FAILED_TO_BUILD"))
    if proc.returncode not in (0, 3, 4) or (not results and proc.returncode != 0):
        # 3 = tests failed (already counted), 4 = no tests; anything else: the build broke.
        if row.failed == 0:
            row.failed += 1
            row.failures.append(("bazel test (exit %d)" % proc.returncode,
                                 tail_of(log, 20) if not verbose else ""))
    return row


def output_dir(config):
    """bazel-out/<dir> of a config: the compilation mode, then the platform suffix (.bazelrc
    sets it to the config's name)."""
    mode = "opt" if config.startswith("opt") else "fastbuild"
    return "k8-%s%s" % (mode, config)


def testlog_path(config, label):
    """bazel-out/<output_dir(config)>/testlogs/<package>/<name>/test.log of a test, if any."""
    pkg, _, name = label.lstrip("/").partition(":")
    path = os.path.join(REPO_ROOT, "bazel-out", output_dir(config), "testlogs", pkg, name,
                        "test.log")
    return path if os.path.exists(path) else None


def smoke_libfuzzer(log_dir):
    row = Row("smoke libfuzzer")
    watch = Stopwatch()
    log = os.path.join(log_dir, "smoke-libfuzzer.log")
    target = "//fuzz:%s_libfuzzer" % SMOKE_TARGET
    say("[smoke] libFuzzer+ASan build of %s, %d s run (log: %s)" % (SMOKE_TARGET, SMOKE_SECONDS, log))
    with open(log, "wb") as out:
        proc = subprocess.run(["bazel", "build", "--config=asan-libfuzzer"] + bazel_common_flags()
                              + [target], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    binary = os.path.join(REPO_ROOT, "bazel-out", "k8-fastbuildasan-libfuzzer", "bin", "fuzz",
                          SMOKE_TARGET + "_libfuzzer")
    if proc.returncode != 0 or not os.path.exists(binary):
        row.failed = 1
        row.failures.append((target, "build failed: " + tail_of(log, 15)))
        row.seconds = watch.seconds()
        return row
    work = tempfile.mkdtemp(prefix="zfuzz-smoke-lf-")
    try:
        corpus = os.path.join(work, "corpus")
        shutil.copytree(os.path.join(REPO_ROOT, "corpus", SMOKE_TARGET), corpus)
        with open(log, "ab") as out:
            proc = subprocess.run([binary, "-max_total_time=%d" % SMOKE_SECONDS,
                                   "-artifact_prefix=" + work + "/", "-print_final_stats=1",
                                   corpus], stdout=out, stderr=subprocess.STDOUT)
        text = tail_of(log, 60)
        runs = 0
        for line in text.splitlines():
            if line.startswith("stat::number_of_executed_units:"):
                runs = int(line.split(":")[-1].strip())
        if proc.returncode == 0 and runs > 0:
            row.passed = 1
            say("[smoke] libFuzzer ran %d inputs in %d s" % (runs, SMOKE_SECONDS))
        else:
            row.failed = 1
            row.failures.append((target, "exit %d, %d runs: %s" % (proc.returncode, runs,
                                                                 tail_of(log, 15))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row.seconds = watch.seconds()
    return row


def smoke_afl(log_dir):
    row = Row("smoke afl++")
    watch = Stopwatch()
    log = os.path.join(log_dir, "smoke-afl.log")
    target = "//fuzz:%s_afl" % SMOKE_TARGET
    say("[smoke] AFL++ (clang 14, ASan) build of %s, %d s run (log: %s)"
        % (SMOKE_TARGET, SMOKE_SECONDS, log))
    with open(log, "wb") as out:
        proc = subprocess.run(["bazel", "build", "--config=asan-afl"] + bazel_common_flags()
                              + [target], cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    binary = os.path.join(REPO_ROOT, "bazel-out", "k8-fastbuildasan-afl", "bin", "fuzz",
                          SMOKE_TARGET + "_afl")
    if proc.returncode != 0 or not os.path.exists(binary):
        row.failed = 1
        row.failures.append((target, "build failed: " + tail_of(log, 15)))
        row.seconds = watch.seconds()
        return row
    work = tempfile.mkdtemp(prefix="zfuzz-smoke-afl-")
    try:
        env = dict(os.environ, AFL_SKIP_CPUFREQ="1", AFL_NO_UI="1",
                   AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES="1", AFL_NO_AFFINITY="1",
                   AFL_SKIP_BIN_CHECK="0")
        with open(log, "ab") as out:
            proc = subprocess.run(["afl-fuzz", "-V", str(SMOKE_SECONDS), "-i",
                                   os.path.join(REPO_ROOT, "corpus", SMOKE_TARGET), "-o",
                                   os.path.join(work, "out"), "--", binary],
                                  stdout=out, stderr=subprocess.STDOUT, env=env)
        stats = {}
        stats_path = os.path.join(work, "out", "default", "fuzzer_stats")
        if os.path.exists(stats_path):
            with open(stats_path) as f:
                for line in f:
                    key, _, value = line.partition(":")
                    stats[key.strip()] = value.strip()
        execs = int(stats.get("execs_done", "0") or 0)
        crashes = int(stats.get("saved_crashes", "0") or 0)
        if proc.returncode == 0 and execs > 0 and crashes == 0:
            row.passed = 1
            say("[smoke] AFL++ ran %d execs in %d s, stability %s"
                % (execs, SMOKE_SECONDS, stats.get("stability", "?")))
        else:
            row.failed = 1
            row.failures.append((target, "exit %d, %d execs, %d crashes: %s"
                                 % (proc.returncode, execs, crashes, tail_of(log, 15))))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    row.seconds = watch.seconds()
    return row


def run_tool_tests(log_dir):
    row = Row("tools (python)")
    watch = Stopwatch()
    log = os.path.join(log_dir, "tools.log")
    say("[tools] python3 -m unittest discover tools/zfuzzlib/tests (log: %s)" % log)
    with open(log, "wb") as out:
        proc = subprocess.run([sys.executable, "-m", "unittest", "discover", "-s",
                               os.path.join("tools", "zfuzzlib", "tests"), "-t", "tools", "-v"],
                              cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    text = tail_of(log, 100000)
    ran = 0
    for line in text.splitlines():
        if line.startswith("Ran ") and " test" in line:
            ran = int(line.split()[1])
    failed = 0
    for line in text.splitlines():
        if line.startswith("FAILED ("):
            for part in line[len("FAILED ("):-1].split(","):
                key, _, value = part.strip().partition("=")
                if key in ("failures", "errors"):
                    failed += int(value)
    row.failed = failed if proc.returncode != 0 else 0
    if proc.returncode != 0 and row.failed == 0:
        row.failed = 1
    row.passed = max(ran - row.failed, 0)
    if row.failed:
        row.failures.append(("tools unit tests", tail_of(log, 30)))
    row.seconds = watch.seconds()
    return row


def print_table(rows):
    print()
    print("%-18s %8s %8s %10s" % ("config", "passed", "failed", "time"))
    print("%-18s %8s %8s %10s" % ("-" * 18, "-" * 8, "-" * 8, "-" * 10))
    for r in rows:
        print("%-18s %8d %8d %10s" % (r.name, r.passed, r.failed, format_duration(r.seconds)))


def run_test(args):
    configs = parse_configs(args.config)
    variant_configs = parse_variants(args.variants, configs)
    total = Stopwatch()
    needed = setup.setup_needed()
    if needed:
        say("set-up needed (%s): running tools/zfuzz setup" % ", ".join(needed))
        setup.run_setup(args)
    if shutil.which("bazel") is None:
        raise ZfuzzError("bazel not found after set-up (package bazel-bootstrap)")
    log_dir = args.log_dir or tempfile.mkdtemp(prefix="zfuzz-test-")
    os.makedirs(log_dir, exist_ok=True)
    rows = []
    for config in configs:
        rows.append(run_bazel_tests(config, stage_targets(config, args.targets), log_dir,
                                    args.verbose, stage_flags(config, configs, variant_configs)))
    if not args.no_smoke:
        rows.append(smoke_libfuzzer(log_dir))
        rows.append(smoke_afl(log_dir))
    if not args.no_tools:
        rows.append(run_tool_tests(log_dir))
    failures = [(r, f) for r in rows for f in r.failures]
    if failures:
        print()
        print("Failures:")
        for row, (what, detail) in failures:
            print("  [%s] %s: %s" % (row.name, what, detail.splitlines()[0] if detail else ""))
            if row.name in KNOWN_CONFIGS:
                path = testlog_path(row.name, what)
                if path:
                    print("      log: %s" % path)
                    for line in tail_of(path, 12).splitlines():
                        print("      | " + line)
            elif detail and "\n" in detail:
                for line in detail.splitlines()[1:12]:
                    print("      | " + line)
    print_table(rows)
    passed = sum(r.passed for r in rows)
    failed = sum(r.failed for r in rows)
    print("\nlogs: %s; total time %s" % (log_dir, format_duration(total.seconds())))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed else 0
