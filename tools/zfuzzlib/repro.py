# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz repro FILE`: reproduce a finding, read it as a program, minimise it, keep it.

The finding's target, sanitizer and injected bug come from its metadata (the .json beside a
reproducer kept by `tools/zfuzz fuzz`), else from its path (out/fuzz/targets/<t>/...), else from
the options, else a question on a terminal. The replay binary of that target and sanitizer runs
the input with ZFUZZ_EXPLAIN=1, so the report and the operation list come from one run and one
decoder (fuzz/api): the program printed is the program that failed.
"""
import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

from . import findings, targets as targets_mod
from .common import REPO_ROOT, ZfuzzError, parse_duration, say

DEFAULT_OUT = os.path.join(REPO_ROOT, "out", "fuzz")
RUN_TIMEOUT = 300
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
# A call line: the tracer's two-space indent, then the call (WARN stack frames have four).
_CALL_RE = re.compile(r"^  (?! )\S")
_ENGINE_NOISE = re.compile(r"^(replay: |INFO: |zfuzz: operations executed|Running: |Executed |"
                           r"\*\*\*|MERGE|#\d+\s)")


def add_parser(sub):
    p = sub.add_parser(
        "repro", help="reproduce a finding: report, operation list, verdict; minimise; keep",
        description="Runs a finding (from `tools/zfuzz fuzz`, a libFuzzer crash-<sha1>, an "
        "AFL++ crashes/ file, or another machine's) in the replay binary of its target and "
        "sanitizer, and prints the symbolized report, the operations the input decodes to "
        "(call lines) and whether it reproduced. Target, sanitizer and injected bug come from "
        "the finding's metadata when it has some.")
    p.add_argument("file", metavar="FILE", help="the input that failed")
    p.add_argument("--target", help="the fuzz target (default: from the metadata or path)")
    p.add_argument("--sanitizer", help="asan, ubsan, msan or tsan (default: from the metadata, "
                   "else asan)")
    p.add_argument("--runs", type=int, default=None,
                   help="times to run it (default 1; 20 for zpool_concurrent_fuzz, whose "
                   "scheduled-mode findings must reproduce every time)")
    p.add_argument("--minimize", action="store_true",
                   help="shrink the input with libFuzzer's -minimize_crash while it still fails "
                   "with the same crash state; writes OUT/minimized/<target>/crash-<sha1>")
    p.add_argument("--minimize-time", default="60s",
                   help="budget for --minimize (default: %(default)s)")
    p.add_argument("--regression", metavar="NAME",
                   help="add the (minimised) input to corpus/regressions/<target>/NAME, so "
                   "`bazel test` replays it, and print a gtest case for it")
    p.add_argument("--inject-bug", default=None, metavar="NAME",
                   help="test-only: the injected bug the finding was made with (default: from "
                   "the metadata)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="where binaries and minimised inputs go (default: out/fuzz)")
    p.add_argument("--corpus-root", default=os.path.join(REPO_ROOT, "corpus"),
                   help=argparse.SUPPRESS)
    p.set_defaults(func=run_repro)


# ---- working out what a file is -------------------------------------------------------------------

def check_input(path, allow_empty=False):
    if not os.path.exists(path):
        raise ZfuzzError("%s: no such file" % path, exit_code=2)
    if os.path.isdir(path):
        raise ZfuzzError("%s is a directory: give one input file" % path, exit_code=2)
    try:
        size = os.path.getsize(path)
        with open(path, "rb"):
            pass
    except OSError as e:
        raise ZfuzzError("%s: cannot read: %s" % (path, e.strerror), exit_code=2)
    if size == 0 and not allow_empty:
        raise ZfuzzError("%s is empty: it decodes to no operation" % path, exit_code=2)


def guess_target_from_path(path, known):
    parts = os.path.abspath(path).split(os.sep)
    for i, part in enumerate(parts[:-1]):
        if part in known:
            return part
    return None


def resolve(path, target, sanitizer, bug, known, ask=None):
    """(target, sanitizer, bug, metadata) for a finding; raises with a one-line cause."""
    meta = findings.read_metadata(path) or {}
    meta_target = meta.get("target")
    if meta_target is not None and meta_target not in known:
        raise ZfuzzError("%s: its metadata names an unknown target %r" % (path, meta_target))
    if target and meta_target and target != meta_target:
        raise ZfuzzError("%s is a finding of %s, not %s (from its metadata)"
                         % (path, meta_target, target), exit_code=2)
    target = target or meta_target or guess_target_from_path(path, known)
    if target is None and ask is not None:
        target = ask("target", list(known))
    if target is None:
        raise ZfuzzError("cannot tell which target %s is for: pass --target (one of %s)"
                         % (path, ", ".join(known)), exit_code=2)
    targets_mod.check_targets([target], known)
    meta_san = meta.get("sanitizer")
    if sanitizer and meta_san and sanitizer != meta_san:
        say("note: %s was found with %s; reproducing with %s as asked"
            % (os.path.basename(path), meta_san, sanitizer))
    sanitizer = sanitizer or meta_san or "asan"
    if sanitizer not in targets_mod.SANITIZERS:
        raise ZfuzzError("unknown sanitizer %r (known: %s)"
                         % (sanitizer, ", ".join(targets_mod.SANITIZERS)), exit_code=2)
    bug = bug or meta.get("bug")
    targets_mod.check_bug(bug)
    return target, sanitizer, bug, meta


def ask_on_terminal(what, choices):
    if not sys.stdin.isatty():
        return None
    print("Which %s? %s" % (what, ", ".join(choices)))
    answer = input("> ").strip()
    if answer not in choices:
        raise ZfuzzError("%r is not one of %s" % (answer, ", ".join(choices)), exit_code=2)
    return answer


# ---- running ---------------------------------------------------------------------------------------

class Run:
    def __init__(self, returncode, text):
        self.returncode = returncode
        self.text = text
        self.calls = [l for l in text.splitlines() if _CALL_RE.match(l)]
        self.report_lines = [l for l in text.splitlines()
                             if not _CALL_RE.match(l) and not _ENGINE_NOISE.match(l)]
        self.failed = returncode != 0
        self.parsed = findings.parse_report(text) if self.failed else None
        self.state = findings.crash_state(self.parsed) if self.failed else None


def run_input(binary, path, trace=True, timeout=RUN_TIMEOUT, extra_env=None):
    env = targets_mod.fuzz_env(dict(extra_env or {}, ZFUZZ_EXPLAIN="1" if trace else "0"))
    try:
        proc = subprocess.run([binary, path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=env, timeout=timeout)
        return Run(proc.returncode, proc.stdout.decode("utf-8", "replace"))
    except subprocess.TimeoutExpired as e:
        text = (e.stdout or b"").decode("utf-8", "replace")
        return Run(124, text + "\nERROR: libFuzzer: timeout (zfuzz: no result in %d s)\n" % timeout)


def build_replay(target, sanitizer, bug, out):
    bindir = os.path.join(out, "bin", targets_mod.variant_name("replay", sanitizer, bug))
    os.makedirs(out, exist_ok=True)
    return targets_mod.build([target], "replay", sanitizer, bindir,
                             os.path.join(out, "build.log"), bug)[target]


def build_libfuzzer(target, sanitizer, bug, out):
    bindir = os.path.join(out, "bin", targets_mod.variant_name("libfuzzer", sanitizer, bug))
    return targets_mod.build([target], "libfuzzer", sanitizer, bindir,
                             os.path.join(out, "build.log"), bug)[target]


_THREAD_LINE_RE = re.compile(r"^\s*\[t(\d+)\] (.*)$")


def thread_columns(calls, width=None):
    """The call lines of a threaded run as one column per thread (the lines carry "[tN] "
    prefixes; the scheduled modes run one thread at a time, so the order down the page is the
    order they ran in). Lines without a prefix (set-up, teardown) span the page. [] when the run
    has fewer than two threads' lines."""
    threads = sorted({int(m.group(1)) for m in (_THREAD_LINE_RE.match(l) for l in calls) if m})
    if len(threads) < 2:
        return []
    column = {t: i for i, t in enumerate(threads)}
    width = width or (58 if len(threads) == 2 else 40 if len(threads) == 3 else 30)
    out = ["".join(("t%d" % t).ljust(width) for t in threads).rstrip()]
    for line in calls:
        m = _THREAD_LINE_RE.match(line)
        if not m:
            out.append(line.strip())
            continue
        text = m.group(2)
        if len(text) > width - 2:
            text = text[:width - 5] + "..."
        out.append(" " * (width * column[int(m.group(1))]) + text)
    return out


def print_run(run):
    print("== report ==")
    body = [l for l in run.report_lines if l.strip()]
    if not body:
        print("(no output)")
    for line in body:
        print(line)
    print("== operations (%d call lines) ==" % len(run.calls))
    for line in run.calls:
        print(line)
    columns = thread_columns(run.calls)
    if columns:
        print("== the threads' calls, side by side (switches marked ~~) ==")
        for line in columns:
            print(line)


def minimize(binary_lf, replay, path, state, budget, out, target):
    """A smaller input that fails with the same crash state, or None.

    libFuzzer's -minimize_crash goes first (fast, in-process) but accepts any crash, so its
    result is kept only when the crash state is unchanged; delta debugging with the replay
    binary (every candidate checked against the state) then shrinks what is left."""
    work = tempfile.mkdtemp(prefix="zfuzz-minimize-")
    deadline = time.monotonic() + budget
    try:
        with open(path, "rb") as f:
            best = f.read()
        result = os.path.join(work, "minimized")
        argv = [binary_lf, "-minimize_crash=1", "-max_total_time=%d" % max(budget // 2, 1),
                "-exact_artifact_path=" + result, path]
        log = os.path.join(out, "minimize.log")
        say("minimising for up to %d s: libFuzzer -minimize_crash, then delta debugging "
            "(log: %s)" % (budget, log))
        with open(log, "wb") as f:
            try:
                subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=work,
                               env=targets_mod.fuzz_env(), timeout=budget + 60)
            except subprocess.TimeoutExpired:
                pass
        if os.path.exists(result):
            check = run_input(replay, result, trace=False)
            if check.failed and check.state == state:
                with open(result, "rb") as f:
                    best = f.read()
            else:
                say("libFuzzer's minimum fails differently (%s): delta debugging from the "
                    "original" % ((check.parsed or {}).get("kind") or "does not fail"))
        probe = os.path.join(work, "probe")

        def same_failure(data):
            with open(probe, "wb") as f:
                f.write(data)
            run = run_input(replay, probe, trace=False, timeout=60)
            return run.failed and run.state == state

        best = ddmin(best, same_failure, deadline)
        if target == CONCURRENT_TARGET:
            best = fewer_preemptions(best, replay, probe, state, deadline)
        with open(path, "rb") as f:
            if best == f.read():
                return None
        digest = hashlib.sha1(best).hexdigest()
        dest_dir = os.path.join(out, "minimized", target)
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, "crash-" + digest)
        with open(dest, "wb") as f:
            f.write(best)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


CONCURRENT_TARGET = "zpool_concurrent_fuzz"
_PREEMPTIONS_RE = re.compile(r"== schedule \(\w+, \d+ points, (\d+) preemptions\) ==")


def preemptions_of(text):
    """The preemption count a scheduled run's report prints (None: not a scheduled run)."""
    m = _PREEMPTIONS_RE.search(text)
    return int(m.group(1)) if m else None


def fewer_preemptions(data, replay, probe, state, deadline):
    """After delta debugging, the schedule: a decision byte that switches threads (>= 0x80)
    becomes one that stays (0x00) wherever the failure, with its crash state, survives it with no
    more preemptions. For input-driven schedules this removes the switches the bug does not need
    (one replay per switching byte, last first)."""
    def run(candidate):
        with open(probe, "wb") as f:
            f.write(candidate)
        r = run_input(replay, probe, trace=False, timeout=60)
        return r if r.failed and r.state == state else None

    first = run(data)
    if first is None:
        return data
    best, count = bytearray(data), preemptions_of(first.text)
    if count is None:
        return data
    start = count
    for i in range(len(best) - 1, -1, -1):
        if time.monotonic() >= deadline or count == 0:
            break
        if best[i] < 0x80:
            continue
        candidate = bytearray(best)
        candidate[i] = 0
        r = run(bytes(candidate))
        if r is None:
            continue
        n = preemptions_of(r.text)
        if n is not None and n <= count:
            best, count = candidate, n
    if count < start:
        say("preemptions: %d -> %d" % (start, count))
    return bytes(best)


def ddmin(data, fails, deadline):
    """Zeller's delta debugging over bytes: removes chunks while `fails` holds, until no single
    chunk can go (or the deadline). `fails(data)` is assumed true for the input."""
    n = 2
    while len(data) >= 2 and time.monotonic() < deadline:
        chunk = -(-len(data) // n)
        reduced = False
        for i in range(0, len(data), chunk):
            if time.monotonic() >= deadline:
                return data
            candidate = data[:i] + data[i + chunk:]
            if candidate and fails(candidate):
                data = candidate
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(n * 2, len(data))
    return data


def add_regression(corpus_root, target, name, path):
    if not _NAME_RE.match(name):
        raise ZfuzzError("--regression %r: use letters, digits, '.', '_' or '-' (not starting "
                         "with a dot)" % name, exit_code=2)
    dest_dir = os.path.join(corpus_root, "regressions", target)
    dest = os.path.join(dest_dir, name)
    with open(path, "rb") as f:
        data = f.read()
    if os.path.exists(dest):
        with open(dest, "rb") as f:
            if f.read() == data:
                say("%s already holds this input" % dest)
                return dest, data
        raise ZfuzzError("%s already exists with other content: choose another name"
                         % os.path.relpath(dest, REPO_ROOT), exit_code=2)
    os.makedirs(dest_dir, exist_ok=True)
    tmp = dest + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, dest)
    return dest, data


def gtest_case(target, name, data, calls):
    """A self-contained gtest case replaying the input (the bytes inline)."""
    camel = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", target) if p)
    test_name = "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", name) if p) or "Case"
    if test_name[0].isdigit():
        test_name = "Case" + test_name
    lines = ["// fuzz/%s_regression_test.cc" % target,
             "// cc_test(name = \"%s_regression_test\", srcs = [\"%s_regression_test.cc\"],"
             % (target, target),
             "//         deps = [\":%s_harness\", \"@com_google_googletest//:gtest_main\"])"
             % target,
             "#include <cstdint>", "", "#include \"gtest/gtest.h\"", "",
             "extern \"C\" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);", "",
             "// corpus/regressions/%s/%s, which decodes to:" % (target, name)]
    for call in calls[:40]:
        lines.append("//   " + call.strip())
    if len(calls) > 40:
        lines.append("//   ... (%d more)" % (len(calls) - 40))
    lines.append("TEST(%sRegression, %s) {" % (camel, test_name))
    lines.append("  static const uint8_t kInput[] = {")
    for i in range(0, len(data), 12):
        lines.append("      " + ", ".join("0x%02x" % b for b in data[i:i + 12]) + ",")
    lines.append("  };")
    lines.append("  EXPECT_EQ(0, LLVMFuzzerTestOneInput(kInput, sizeof(kInput)));")
    lines.append("}")
    return "\n".join(lines)


def run_repro(args):
    # An empty input can fail (a harness's set-up or teardown alone may meet a bug), so it is
    # run like any other; the verdict says so when it does not reproduce.
    check_input(args.file, allow_empty=True)
    known = targets_mod.list_targets()
    if args.runs is not None and args.runs < 1:
        raise ZfuzzError("--runs must be at least 1", exit_code=2)
    try:
        budget = parse_duration(args.minimize_time)
    except ValueError as e:
        raise ZfuzzError("--minimize-time: %s" % e, exit_code=2)
    target, sanitizer, bug, meta = resolve(args.file, args.target, args.sanitizer,
                                           args.inject_bug, known, ask_on_terminal)
    runs = args.runs or (20 if target == "zpool_concurrent_fuzz" else 1)
    out = os.path.abspath(args.out)
    say("reproducing %s: target %s, %s%s" % (args.file, target, sanitizer,
                                            ", injected bug " + bug if bug else ""))
    replay = build_replay(target, sanitizer, bug, out)
    # The environment the finding ran in (a TSan campaign forces the free-running mode).
    extra = meta.get("env") if isinstance(meta.get("env"), dict) else None
    if extra:
        say("environment of the finding: %s" % " ".join("%s=%s" % kv for kv in sorted(extra.items())))
    first = run_input(replay, args.file, extra_env=extra)
    results = [first] + [run_input(replay, args.file, trace=False, extra_env=extra)
                         for _ in range(runs - 1)]
    print_run(first)
    failed = [r for r in results if r.failed]
    same = [r for r in failed if r.state == first.state]
    print("== verdict ==")
    if not first.failed:
        expected = meta.get("kind")
        print("did not reproduce: the input ran clean%s%s"
              % (" (it was found as: %s)" % expected if expected else "",
                 "; the file is empty" if os.path.getsize(args.file) == 0 else ""))
        if len(failed):
            print("but %d of %d later runs failed: timing-dependent" % (len(failed), runs))
        if os.path.exists(args.file + ".txt"):
            print("the report kept when it was found: %s.txt%s"
                  % (args.file, " (from the fuzzer's log %s)" % meta["log"]
                     if meta.get("log") else ""))
        return 1
    print("reproduced %d/%d: %s" % (len(same), runs, first.parsed["kind"]))
    print("crash state: %s" % " <- ".join(first.parsed["frames"] or ["?"]))
    if first.parsed["location"]:
        print("at %s" % first.parsed["location"])
    if meta.get("state") and meta["state"] != first.state:
        print("note: the finding's recorded state differs:\n  %s"
              % meta["state"].replace("\n", " <- "))
    keep = args.file
    calls = first.calls
    if args.minimize:
        lf = build_libfuzzer(target, sanitizer, bug, out)
        smaller = minimize(lf, replay, args.file, first.state, budget, out, target)
        if smaller:
            small_run = run_input(replay, smaller)
            print("== minimised: %d -> %d bytes, %d -> %d call lines: %s =="
                  % (os.path.getsize(args.file), os.path.getsize(smaller), len(first.calls),
                     len(small_run.calls), smaller))
            for line in small_run.calls:
                print(line)
            keep, calls = smaller, small_run.calls
    if args.regression:
        dest, data = add_regression(os.path.abspath(args.corpus_root), target, args.regression,
                                    keep)
        print("== regression: %s ==" % dest)
        print("`bazel test //fuzz:%s` replays it from now on (in every sanitizer config)."
              % target)
        print("A gtest case for it, if you want one by name:\n")
        print(gtest_case(target, args.regression, data, calls))
    return 0 if len(same) == runs else 1
