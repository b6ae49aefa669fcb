# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz explore`: the systematic explorer over the scenario catalogue, for hours.

  tools/zfuzz explore [SCENARIO...] [--bound 3] [--time 1h] [--sanitizer asan|ubsan|msan|tsan]
                      [--inject-bug NAME] [--out DIR]
  tools/zfuzz explore --list
  tools/zfuzz explore --replay SCENARIO --schedule TEXT [--runs 20]

Builds //fuzz/explore:explore in the sanitizer's test config (the build `bazel test` uses), then
runs it: every scenario at preemption bound 0, then 1, ... up to --bound, cheapest first, with a
progress line every 30 s. A failure (the linearizability oracle, an invariant, or a crash: a BUG
or a sanitizer report ends the explorer's process) is kept with its schedule, and the exploration
goes on with the other scenarios. The summary lists every scenario's executions and verdict, and
each failure with the command that replays it; OUT/explore.json holds the same.
"""
import json
import os
import re
import subprocess
import sys
import time

from . import targets as targets_mod
from .common import (REPO_ROOT, Stopwatch, ZfuzzError, format_duration, parse_duration, say,
                     writable_dir)

DEFAULT_OUT = os.path.join(REPO_ROOT, "out", "explore")
LABEL = "//fuzz/explore:explore"
_CRASH_RE = re.compile(r"explore: FAILED \(crash\) in scenario '([^']+)' at preemption bound (\d+)")
_SCHEDULE_RE = re.compile(r"^schedule: (\S+)$")
_FAILED_RE = re.compile(r"^== FAILED: (\S+) \(.*\) at preemption bound (\d+), after")
_REPLAY_RE = re.compile(r"^replay: explore --replay '([^']+)' --schedule (\S+)$")
_HEADLINE_RE = re.compile(r"kernel BUG at|ERROR: \w+Sanitizer|WARNING: \w+Sanitizer|"
                          r"zfuzz: FINDING|not linearizable|runtime error:|deadlock")


def add_parser(sub):
    p = sub.add_parser(
        "explore",
        help="explore every interleaving of the scenario catalogue up to a preemption bound",
        description="Systematic concurrency exploration (CHESS-style iterative preemption "
        "bounding with sleep sets) of the scenario catalogue of fuzz/explore, judged by a "
        "linearizability oracle. Runs bounds 0..--bound over the catalogue, cheapest scenarios "
        "first, and keeps every failure with a schedule that replays it.")
    p.add_argument("scenarios", nargs="*", metavar="SCENARIO",
                   help="scenarios to explore (substrings of their names; default: all)")
    p.add_argument("--bound", type=int, default=3,
                   help="highest preemption bound (default: %(default)s; the suite runs 2)")
    p.add_argument("--time", default=None,
                   help="wall-clock budget for the whole exploration, e.g. 10m, 4h (default: "
                   "none: until every scenario is complete at --bound)")
    p.add_argument("--time-per-scenario", default=None,
                   help="budget per scenario across its bounds (default: none)")
    p.add_argument("--sanitizer", default="asan",
                   help="asan, ubsan, msan, tsan, or none (default: %(default)s)")
    p.add_argument("--inject-bug", default=None, metavar="NAME",
                   help="test-only: build with one injected bug (%s)"
                   % ", ".join(targets_mod.INJECTED_BUGS))
    p.add_argument("--out", default=DEFAULT_OUT, help="logs and explore.json (default: %(default)s)")
    p.add_argument("--list", action="store_true", help="list the catalogue and exit")
    p.add_argument("--replay", metavar="SCENARIO", help="replay one schedule of this scenario")
    p.add_argument("--schedule", metavar="TEXT", help="the schedule to replay (e.g. 0x6.1x487.0x1)")
    p.add_argument("--runs", type=int, default=20, help="replays of --replay (default: 20)")
    p.set_defaults(func=run_explore)


def _duration(flag, text):
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as e:
        raise ZfuzzError("%s: %s" % (flag, e), exit_code=2)


def build(sanitizer, bug, out):
    """The explore binary of this variant, copied under OUT/bin."""
    san = None if sanitizer == "none" else sanitizer
    if san is not None and san not in targets_mod.SANITIZERS:
        raise ZfuzzError("--sanitizer: unknown %r (asan, ubsan, msan, tsan or none)" % sanitizer,
                         exit_code=2)
    targets_mod.check_bug(bug)
    targets_mod.require_tools("replay")
    flags = targets_mod.bazel_flags("replay", san, bug)
    variant = targets_mod.variant_name("explore", san, bug)
    dest = os.path.join(out, "bin", variant)
    os.makedirs(dest, exist_ok=True)
    prefix = os.path.join(dest, ".bazel-")
    log = os.path.join(out, "build.log")
    argv = ["bazel", "build"] + flags + ["--symlink_prefix=" + prefix, "--", LABEL]
    say("building %s (%s; log: %s)" % (LABEL, variant, log))
    with open(log, "ab") as f:
        f.write(("$ " + " ".join(argv) + "\n").encode())
        f.flush()
        proc = subprocess.run(argv, cwd=REPO_ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise ZfuzzError("bazel build of %s failed (log: %s)" % (LABEL, log))
    built = prefix + "bin/fuzz/explore/explore"
    binary = os.path.join(dest, "explore")
    with open(built, "rb") as src, open(binary + ".tmp", "wb") as dst:
        dst.write(src.read())
    os.chmod(binary + ".tmp", 0o755)
    os.replace(binary + ".tmp", binary)
    return binary


def parse_output(text):
    """Failures in an explorer's output: [{scenario, bound, schedule, kind, report}]."""
    found = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _FAILED_RE.match(line)
        if m:
            report = []
            for follow in lines[i + 1:]:
                r = _REPLAY_RE.match(follow)
                if r:
                    found.append({"scenario": m.group(1), "bound": int(m.group(2)),
                                  "schedule": r.group(2), "kind": "oracle",
                                  "report": "\n".join(report)})
                    break
                report.append(follow)
            continue
        m = _CRASH_RE.search(line)
        if m:
            schedule = ""
            for back in reversed(lines[:i]):
                s = _SCHEDULE_RE.match(back.strip())
                if s:
                    schedule = s.group(1)
                    break
            start = max(0, i - 80)
            found.append({"scenario": m.group(1), "bound": int(m.group(2)),
                          "schedule": schedule, "kind": "crash",
                          "report": "\n".join(lines[start:i])})
    return found


def _run_streaming(argv, log_path):
    """Runs argv, echoing its stdout lines (progress) and keeping everything in log_path."""
    chunks = []
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=targets_mod.fuzz_env())
        for raw in proc.stdout:
            log.write(raw)
            line = raw.decode("utf-8", "replace")
            chunks.append(line)
            if line.startswith(("explore: ", "== FAILED", "replay: ")):
                print(line.rstrip("\n"), flush=True)
        code = proc.wait()
    return code, "".join(chunks)


def run_explore(args):
    out = writable_dir(os.path.abspath(args.out))
    if args.bound < 0 or args.bound > 16:
        raise ZfuzzError("--bound: 0..16", exit_code=2)
    total = _duration("--time", args.time)
    per = _duration("--time-per-scenario", args.time_per_scenario)
    if (args.replay is None) != (args.schedule is None):
        raise ZfuzzError("--replay and --schedule go together", exit_code=2)
    if args.runs < 1:
        raise ZfuzzError("--runs must be at least 1", exit_code=2)
    binary = build(args.sanitizer, args.inject_bug, out)
    if args.list:
        return subprocess.run([binary, "--list"], env=targets_mod.fuzz_env()).returncode
    if args.replay is not None:
        return replay(binary, args.replay, args.schedule, args.runs)

    watch = Stopwatch()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log = os.path.join(out, "explore-%s.log" % stamp)
    say("exploring (bound %d, %s%s; log: %s)" % (
        args.bound, args.sanitizer, ", injected bug " + args.inject_bug if args.inject_bug else "",
        log))
    failures, rows, skipped = [], {}, []
    while True:
        argv = [binary, "--bound", str(args.bound), "--json", os.path.join(out, "part.json")]
        if total is not None:
            left = total - watch.seconds()
            if left <= 1:
                break
            argv += ["--total-time", "%.0f" % left]
        if per is not None:
            argv += ["--time-per-scenario", str(per)]
        for name in skipped:
            argv += ["--skip", name]
        argv += list(args.scenarios)
        if os.path.exists(os.path.join(out, "part.json")):
            os.unlink(os.path.join(out, "part.json"))
        code, text = _run_streaming(argv, log)
        if code == 2 and "no scenario matches" in text:
            if not skipped:
                raise ZfuzzError("no scenario matches %s (tools/zfuzz explore --list)"
                                 % " ".join(args.scenarios), exit_code=2)
            break  # every scenario left has crashed
        if code == 2:
            raise ZfuzzError("explore: bad arguments (log: %s)" % log, exit_code=2)
        found = parse_output(text)
        failures += found
        part = os.path.join(out, "part.json")
        if os.path.exists(part):
            with open(part) as f:
                for row in json.load(f).get("scenarios", []):
                    rows[row["scenario"]] = row
        crashed = [f["scenario"] for f in found if f["kind"] == "crash"]
        if code in (0, 1) or not crashed:
            if code not in (0, 1):
                raise ZfuzzError("the explorer exited %d without naming a scenario (log: %s)"
                                 % (code, log))
            break
        # A crash ended the process: go on with the scenarios not yet finished.
        for name in crashed:
            rows[name] = {"scenario": name, "verdict": "CRASHED", "executions": None,
                          "seconds": None}
            skipped.append(name)
    result = {"bound": args.bound, "sanitizer": args.sanitizer, "bug": args.inject_bug,
              "seconds": round(watch.seconds(), 1), "scenarios": sorted(rows.values(),
                                                                        key=lambda r: r["scenario"]),
              "failures": failures, "log": log}
    path = os.path.join(out, "explore.json")
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
    print_summary(result, args)
    say("summary: %s" % path)
    return 1 if failures else 0


def replay(binary, scenario, schedule, runs):
    """Runs one schedule `runs` times, each in its own process (a crash ends a process): the
    first with its call lines and interleaving shown, then the verdict: reproduced k/runs."""
    argv = [binary, "--replay", scenario, "--schedule", schedule, "--runs", "1"]
    first = subprocess.run(argv, env=targets_mod.fuzz_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    text = first.stdout.decode("utf-8", "replace")
    if first.returncode == 2:
        raise ZfuzzError(text.strip().splitlines()[-1] if text.strip() else "bad replay",
                         exit_code=2)
    print(text.rstrip())
    failed = int(first.returncode != 0)
    for _ in range(runs - 1):
        proc = subprocess.run(argv, env=targets_mod.fuzz_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        failed += proc.returncode != 0
    print("== replays ==\nreproduced %d/%d%s" % (failed, runs,
                                               "" if failed in (0, runs) else ": NOT deterministic"))
    return 1 if failed else 0


def print_summary(result, args):
    print()
    rows = result["scenarios"]
    ok = sum(1 for r in rows if r.get("verdict") == "ok")
    execs = sum(r.get("executions") or 0 for r in rows)
    print("%d scenario(s) at bound %d in %s: %d complete and clean, %d failed, %d incomplete; "
          "%d executions" % (len(rows), result["bound"], format_duration(result["seconds"]), ok,
                             sum(1 for r in rows if r.get("verdict") in ("FAILED", "CRASHED")),
                             sum(1 for r in rows if r.get("verdict") == "incomplete"), execs))
    if not result["failures"]:
        print("no failures")
        return
    print("failures (each replays with its schedule):")
    extra = ""
    if args.sanitizer != "asan":
        extra += " --sanitizer " + args.sanitizer
    if args.inject_bug:
        extra += " --inject-bug " + args.inject_bug
    for f in result["failures"]:
        lines = [l.strip() for l in f["report"].splitlines() if l.strip()]
        first = next((l for l in lines if _HEADLINE_RE.search(l)), lines[0] if lines else "")
        print("  %s (bound %d, %s): %s" % (f["scenario"], f["bound"], f["kind"], first[:120]))
        print("    tools/zfuzz explore --replay '%s' --schedule %s%s"
              % (f["scenario"], f["schedule"] or "?", extra))
