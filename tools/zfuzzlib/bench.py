# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz bench`: density and speed of our allocators against the malloc family, the cost of
the hardening checks and of the lock-order checker, and fuzzing throughput (issue 10).

Steps, each timed:
  1. build (Bazel, --config=opt): //bench's binaries, and alloc_bench_ours again with
     --copt=-DZPOOL_UNCHECKED=1 --platform_suffix=opt-unchecked (the unchecked build, in its own
     output directory); the binaries are copied into a temporary directory;
  2. the workload: real pages of /usr compressed with LZ4 and zstd (bench/workload.h), written
     once into that directory;
  3. density runs: each contender once per compressor (store all, churn, compaction), two at a
     time (memory is measured there, not time);
  4. speed runs: every contender `reps` times, interleaved (so drift hits all alike), pinned to
     the idlest CPU; the figures are medians, the speed ratios are against glibc malloc + memcpy
     of the same run;
  4b. hardening pairs: each hardened contender run back to back as the unchecked build and with
     the always-on checks (and in full mode KC_HARDENING_FULL), the order alternating from pair
     to pair, the same seed within a pair; the cost is the median over the pairs of each pair's
     time ratio, so drift and a noisy neighbour hit both halves of a pair alike;
  5. the lock-order checker's cost (bench/lock_bench);
  6. fuzzing throughput: every //fuzz:*_libfuzzer target and the trivial //bench target under
     libFuzzer+ASan, libFuzzer and AFL++, a few seconds each;
  7. outputs: a table on stdout (also table.txt), bench.json, bench.png (gnuplot) in --out.
Exit 0, or 1 if a run failed (a verification, a WARN, a crash); the figures are printed anyway.
A fuzz target that finds a bug is not a failure of the benchmark: its row is marked [finding].
"""
import concurrent.futures
import json
import math
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

from .common import (REPO_ROOT, Stopwatch, ZfuzzError, format_duration, say, tail_of, warn,
                     writable_dir)

# ---- parameters ---------------------------------------------------------------------------------

MODES = {
    # speed runs use `pages` (evenly spaced) of the workload; density runs use `density_pages`.
    # hardening: the builds/levels compared with the always-on checks of the main runs.
    "quick": dict(workload_pages=10000, pages=10000, density_pages=10000, reps=3, inner=3,
                  lock_iters=200000, lock_reps=21, libfuzzer_seconds=1, afl_seconds=1,
                  hardening=["unchecked"], hardening_pairs=9, hardening_inner=5),
    "full": dict(workload_pages=200000, pages=20000, density_pages=200000, reps=5, inner=5,
                 lock_iters=500000, lock_reps=41, libfuzzer_seconds=5, afl_seconds=8,
                 hardening=["unchecked", "full"], hardening_pairs=9, hardening_inner=10),
}

BASELINE = "glibc"

# key -> (binary, --contender, build). "checked" binaries come from --config=opt; "unchecked"
# from the same with -DZPOOL_UNCHECKED=1.
CONTENDERS = {
    "zsmalloc": ("alloc_bench_ours", "zsmalloc", "checked"),
    "zsmalloc-cs4": ("alloc_bench_ours_cs4", "zsmalloc", "checked"),
    "zbud": ("alloc_bench_ours", "zbud", "checked"),
    "zpool-zsmalloc": ("alloc_bench_ours", "zpool-zsmalloc", "checked"),
    "zpool-zsmalloc-cs4": ("alloc_bench_ours_cs4", "zpool-zsmalloc", "checked"),
    "zpool-zbud": ("alloc_bench_ours", "zpool-zbud", "checked"),
    "glibc": ("alloc_bench_glibc", "glibc", "checked"),
    "jemalloc": ("alloc_bench_jemalloc", "jemalloc", "checked"),
    "mimalloc": ("alloc_bench_mimalloc", "mimalloc", "checked"),
}
OURS = ["zsmalloc", "zsmalloc-cs4", "zbud", "zpool-zsmalloc", "zpool-zsmalloc-cs4", "zpool-zbud"]
MALLOCS = ["glibc", "jemalloc", "mimalloc"]
# Hardening comparison: the always-on checks (KC_HARDENING_CHEAP, the main runs) against the
# unchecked build, and FULL against the unchecked build.
HARDENED = ["zsmalloc", "zbud", "zpool-zsmalloc", "zpool-zbud"]
HARDENING_PHASES = "store,load,refill,free,steady,churn"
HARDENING_TARGET = 0.10  # the always-on checks within 10% of the unchecked build
# Issue 7 sets the target on the allocation and map paths: refill (alloc + map WO + copy + unmap,
# warm memory) and load (map RO + copy + unmap). store is the same allocation path into fresh
# memory, a single pass dominated by page faults; the phases with frees are reported beside.
HARDENING_VERDICT_PHASES = ("refill", "load")
HARDENING_REPORT_PHASES = ("store", "refill", "load", "free_half", "free", "steady", "churn")

SPEED_PHASES = ["store", "refill", "load", "free_half", "free", "steady", "churn"]
THREAD_PHASES = ["store_2t", "refill_2t", "load_2t", "free_half_2t", "free_2t"]
DENSITY_STATES = ["alloc", "churn", "compacted"]

# Issue 10's targets and the kernel's own figures (Documentation/mm/zsmalloc.rst).
TARGET_ALLOC_OVERHEAD = 0.03
TARGET_COMPACTED_OVERHEAD = 0.05
TARGET_SPEED_RATIO = 0.8
KERNEL_OVERHEAD = {"zsmalloc": 0.022, "zsmalloc-cs4": 0.043}
ANCHOR_OVERHEAD = {"glibc": (0.006, 0.72), "jemalloc": (0.097, 1.11), "mimalloc": (0.102, 1.28)}

ALLOC_BINARIES = ["alloc_bench_ours", "alloc_bench_ours_cs4", "alloc_bench_glibc",
                  "alloc_bench_jemalloc", "alloc_bench_mimalloc"]
FUZZ_CONFIGS = [("asan-libfuzzer", "libFuzzer+ASan"), ("libfuzzer", "libFuzzer"),
                ("afl", "AFL++")]
TRIVIAL = "trivial (ceiling)"


def add_parser(sub):
    p = sub.add_parser(
        "bench",
        help="benchmarks: density and speed vs glibc/jemalloc/mimalloc, hardening cost, "
        "fuzzing throughput",
        description="Builds //bench with --config=opt, compresses real pages of /usr with LZ4 "
        "and zstd, stores them in zsmalloc (chain 8 and 4), zbud, both through zpool, glibc "
        "malloc, jemalloc and mimalloc, verifies every object read back, and prints density, "
        "speed (ratios against glibc malloc + memcpy of the same run), the cost of the hardening "
        "checks and of the lock-order checker, and each fuzz target's execs/s under "
        "libFuzzer+ASan, libFuzzer and AFL++. Writes table.txt, bench.json and bench.png to "
        "--out. Quick mode takes about 2 minutes, full mode under 15 (once built, on an idle "
        "machine).")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", dest="mode", action="store_const", const="quick",
                      help="10,000 pages, 3 repetitions, 1 s fuzzing runs (the default)")
    mode.add_argument("--full", dest="mode", action="store_const", const="full",
                      help="200,000 pages for density, 20,000 for speed, 5 repetitions, "
                      "5-8 s fuzzing runs")
    p.set_defaults(mode="quick")
    p.add_argument("--out", default=os.path.join(REPO_ROOT, "out", "bench"),
                   help="directory for table.txt, bench.json, bench.png, the gnuplot script and "
                   "logs (default: %(default)s)")
    p.add_argument("--reps", default=None, metavar="N",
                   help="repetitions of each speed run (default: the mode's)")
    p.add_argument("--pages", default=None, metavar="N",
                   help="pages of the speed runs (default: the mode's)")
    p.add_argument("--no-fuzz", action="store_true", help="skip the fuzzing throughput step")
    p.set_defaults(func=run_bench)



# ---- pure helpers (unit-tested) ------------------------------------------------------------------

def _positive_int(flag, text, minimum=1):
    try:
        value = int(str(text).strip())
    except ValueError:
        raise ZfuzzError("%s: %r is not a whole number" % (flag, text), exit_code=2)
    if value < minimum:
        raise ZfuzzError("%s: must be at least %d (got %d)" % (flag, minimum, value), exit_code=2)
    return value


def resolve_params(mode, reps=None, pages=None):
    """The mode's parameters with the command line's overrides. One-line errors (exit 2)."""
    if mode not in MODES:
        raise ZfuzzError("unknown mode %r (known: %s)" % (mode, ", ".join(sorted(MODES))),
                         exit_code=2)
    params = {k: (list(v) if isinstance(v, list) else v) for k, v in MODES[mode].items()}
    params["mode"] = mode
    if reps is not None:
        params["reps"] = _positive_int("--reps", reps)
    if pages is not None:
        params["pages"] = _positive_int("--pages", pages, minimum=100)
        params["density_pages"] = max(params["density_pages"], params["pages"])
    params["workload_pages"] = max(params["workload_pages"], params["pages"],
                                   params["density_pages"])
    return params


def check_out_dir(path):
    """Creates `path` if needed and proves it writable; ZfuzzError otherwise."""
    return writable_dir(path)


def median(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def speed_summary(runs):
    """{phase: median ops/s} over the runs of one contender."""
    phases = {}
    for run in runs:
        for name, phase in run.get("phases", {}).items():
            if "ops_per_sec" in phase:
                phases.setdefault(name, []).append(phase["ops_per_sec"])
    return {name: median(values) for name, values in phases.items()}


def density_summary(runs):
    """{state: {overhead, density, used_bytes, live_bytes, stat_bytes, rss_bytes}} (medians)."""
    out = {}
    for state in DENSITY_STATES + ["steady"]:
        rows = [r["density"][state] for r in runs if state in r.get("density", {})]
        if not rows:
            continue
        out[state] = {key: median([row.get(key) for row in rows])
                      for key in ("overhead", "density", "used_bytes", "live_bytes",
                                  "stat_bytes", "rss_bytes")}
    return out


def ratio(value, base):
    if value is None or base in (None, 0):
        return None
    return value / base


def merge_results(speed_runs, density_runs, baseline=BASELINE):
    """Groups raw runs by contender: medians, ratios against the baseline's medians.

    speed_runs: {key: [run json, ...]}; density_runs: {algo: {key: [run json, ...]}}.
    """
    merged = {}
    base = speed_summary(speed_runs.get(baseline, []))
    for key in sorted(set(speed_runs) | {k for d in density_runs.values() for k in d}):
        runs = speed_runs.get(key, [])
        speed = speed_summary(runs)
        entry = {
            "runs": len(runs),
            "speed": {name: {"ops_per_sec": value, "vs_glibc": ratio(value, base.get(name))}
                      for name, value in sorted(speed.items())},
            "density": {algo: density_summary(by_key.get(key, []))
                        for algo, by_key in sorted(density_runs.items())},
        }
        sample = (runs or [r for d in density_runs.values() for r in d.get(key, [])] or [{}])[0]
        for field in ("build", "memory_method", "hardening", "objects", "skipped_too_large",
                      "max_size", "pages_used"):
            if field in sample:
                entry[field] = sample[field]
        merged[key] = entry
    return merged


def _phase_seconds(run, phase):
    """Seconds per operation of `phase` in one run, or None."""
    ops = run.get("phases", {}).get(phase, {}).get("ops_per_sec")
    return 1.0 / ops if ops else None


def hardening_summary(pairs, phases=HARDENING_REPORT_PHASES):
    """pairs: {key: [{"unchecked": run, "cheap": run, "full": run (optional)}, ...]}.
    For each hardened contender, level and phase: the median over the pairs of the time ratio
    checked / unchecked, as `cost` (extra time of the checks) and `ratio` (ops/s, 1 / time ratio),
    with the pair count and the spread (lowest and highest cost)."""
    out = {}
    for key in HARDENED:
        runs = [p for p in pairs.get(key, []) if p.get("unchecked")]
        if not runs:
            continue
        row = {"pairs": len(runs)}
        for level in ("cheap", "full"):
            row[level] = {}
            for phase in phases:
                costs = []
                for pair in runs:
                    base = _phase_seconds(pair["unchecked"], phase)
                    checked = _phase_seconds(pair.get(level) or {}, phase)
                    if base and checked:
                        costs.append(checked / base - 1.0)
                cost = median(costs)
                row[level][phase] = {"cost": cost,
                                     "ratio": None if cost is None else 1.0 / (1.0 + cost),
                                     "low": min(costs) if costs else None,
                                     "high": max(costs) if costs else None}
        out[key] = row
    return out


def check_targets(merged, hardening, model=None):
    """Issue 10's targets: a list of {target, value, limit, met, detail}. `model`: the kernel
    formulas' overhead on the same objects ({"zsmalloc": x}), quoted beside the density."""
    checks = []

    def add(name, value, limit, met, detail, kind):
        checks.append({"target": name, "value": value, "limit": limit, "kind": kind,
                       "met": None if value is None else met, "detail": detail})

    zs = merged.get("zsmalloc", {}).get("density", {}).get("lz4", {})
    alloc = zs.get("alloc", {}).get("overhead")
    formula = (model or {}).get("zsmalloc")
    add("zsmalloc chain 8 allocate-only overhead (lz4)", alloc, TARGET_ALLOC_OVERHEAD,
        alloc is not None and alloc <= TARGET_ALLOC_OVERHEAD,
        "pages * PAGE_SIZE vs compressed bytes" +
        ("; kernel formulas on the same objects: %s" % fmt_pct(formula)
         if formula is not None else ""), "overhead")
    compacted = zs.get("compacted", {}).get("overhead")
    add("zsmalloc chain 8 after churn + zs_compact (lz4)", compacted, TARGET_COMPACTED_OVERHEAD,
        compacted is not None and compacted <= TARGET_COMPACTED_OVERHEAD,
        "pages * PAGE_SIZE vs live bytes", "overhead")
    for key in OURS:
        speed = merged.get(key, {}).get("speed", {})
        for phase, label in (("store", "stores (fresh memory)"), ("refill", "stores (warm)"),
                             ("load", "loads")):
            r = speed.get(phase, {}).get("vs_glibc")
            add("%s %s vs glibc, 1 thread" % (key, label), r, TARGET_SPEED_RATIO,
                r is not None and r >= TARGET_SPEED_RATIO, "ops/s ratio, medians", "ratio")
    for key, row in sorted(hardening.items()):
        # The allocation and map paths (HARDENING_VERDICT_PHASES), each the median of its pairs.
        costs = [(v["cost"], phase) for phase, v in row.get("cheap", {}).items()
                 if v.get("cost") is not None and phase in HARDENING_VERDICT_PHASES]
        if not costs:
            continue
        worst, phase = max(costs)
        add("%s always-on checks vs unchecked (alloc, map)" % key, worst, HARDENING_TARGET,
            worst <= HARDENING_TARGET,
            "worst of refill, load: %s (extra time, median of %s pairs)"
            % (phase, row.get("pairs", "?")), "overhead")
    return checks


def kernel_model_pages(sizes, chain, page_size=4096, handle=8):
    """Pages the kernel's zsmalloc (6.x formulas) needs for objects of `sizes` bytes, packed
    perfectly (each size class fills its zspages before opening a new one)."""
    min_size, delta = 32, page_size >> 8
    nclasses = (page_size - min_size + delta - 1) // delta + 1

    def chain_size(size):
        if size & (size - 1) == 0:
            return 1
        best, pages = None, 1
        for i in range(1, chain + 1):
            waste = (i * page_size) % size
            if best is None or waste < best:
                best, pages = waste, i
        return pages

    classes, prev = [None] * nclasses, None
    for i in range(nclasses - 1, -1, -1):
        size = min(min_size + i * delta, page_size)
        pages = chain_size(size)
        objs = pages * page_size // size
        if prev is not None and prev[1] == pages and prev[2] == objs:
            classes[i] = prev  # merged into the larger class
        else:
            prev = (size, pages, objs)
            classes[i] = prev
    counts = {}
    for s in sizes:
        s += handle
        index = 0 if s < min_size else min((s - min_size + delta - 1) // delta, nclasses - 1)
        counts[classes[index]] = counts.get(classes[index], 0) + 1
    return sum(-(-n // c[2]) * c[1] for c, n in counts.items())


def read_workload_sizes(path, pages=None):
    """[(lz4_len, zstd_len)] of the workload file's pages, or of `pages` of them evenly spaced
    (the harness's --pages selection)."""
    with open(path, "rb") as f:
        header = f.read(72)
        (magic, page_size, n, _seed, table_off, _orig, _b0, _b1, _l0,
         _l1) = struct.unpack("<8sIIQQQQQQQ", header)
        if magic != b"ZFBENCH1":
            raise ZfuzzError("%s: not a workload file" % path)
        f.seek(table_off)
        table = f.read(n * 32)
    want = n if pages is None or pages >= n else pages
    out = []
    for k in range(want):
        i = k * n // want
        _o0, _o1, len0, len1, _src, _cat = struct.unpack_from("<QQIIII", table, i * 32)
        out.append((len0, len1))
    return page_size, out


def parse_proc_stat(text):
    """{cpu index: (idle jiffies, total jiffies)} from /proc/stat's per-CPU lines."""
    out = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu") or fields[0] == "cpu":
            continue
        try:
            values = [int(v) for v in fields[1:]]
            index = int(fields[0][3:])
        except ValueError:
            continue
        idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
        out[index] = (idle, sum(values))
    return out


def pick_cpu(before, after):
    """The CPU that was idlest between two parse_proc_stat() samples (lowest index on ties);
    None without data."""
    best, best_idle = None, -1.0
    for cpu in sorted(set(before) & set(after)):
        d_idle = after[cpu][0] - before[cpu][0]
        d_total = after[cpu][1] - before[cpu][1]
        idle = d_idle / d_total if d_total > 0 else 0.0
        if idle > best_idle + 1e-9:
            best, best_idle = cpu, idle
    return best


def fmt_rate(value):
    if value is None:
        return "-"
    if value >= 1e6:
        return "%.2fM" % (value / 1e6)
    if value >= 1e3:
        return "%.0fk" % (value / 1e3)
    return "%.0f" % value


def fmt_pct(value, signed=True):
    if value is None:
        return "-"
    return ("%+.1f%%" if signed else "%.1f%%") % (value * 100)


def fmt_ratio(value):
    return "-" if value is None else "%.2fx" % value


def _table(headers, rows, aligns=None):
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    aligns = aligns or (["<"] + [">"] * (len(headers) - 1))

    def line(cells):
        return "  ".join(("{:%s%d}" % (aligns[i], widths[i])).format(c)
                         for i, c in enumerate(cells)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(row) for row in rows]
    return "\n".join(out)


def format_report(report):
    """The stdout table: workload, density, speed, hardening, lock checker, fuzzing, targets."""
    lines = []
    params = report.get("params", {})
    w = report.get("workload", {})
    m = report.get("machine", {})
    lines.append("zfuzz bench (%s): %s, %s CPUs, kernel %s, page fault %s us, runs pinned to "
                 "CPU %s" % (params.get("mode", "?"), m.get("cpu", "?"), m.get("nproc", "?"),
                             m.get("kernel", "?"), m.get("page_fault_us", "?"),
                             m.get("pinned_cpu", "-")))
    loads = [l for key in ("loadavg_start", "loadavg_end") for l in (m.get(key) or [])[:1]]
    if loads:
        busy = max(loads) > 0.5 * (m.get("nproc") or 1)
        lines.append("load average (1 min) at start / end: %s%s" % (
            " / ".join("%.1f" % l for l in loads),
            ": the machine was busy, expect noisy speed figures" if busy else ""))
    if w:
        categories = w.get("categories", {})
        names = [n for n in ("lib", "bin", "doc", "text") if n in categories]
        names += [n for n in categories if n not in names]
        cats = ", ".join("%s %d" % (n, categories[n].get("pages", 0)) for n in names)
        lines.append("workload: %d pages of /usr (%s), %d same-filled pages skipped, seed %s"
                     % (w.get("pages", 0), cats, w.get("same_filled_skipped", 0),
                        w.get("seed", "?")))
        for algo, a in w.get("algos", {}).items():
            lines.append("  %-4s mean %6.0f B, median %4d B, %5.1f%% stored whole (>= PAGE_SIZE)"
                         % (algo, a.get("mean", 0), a.get("p50", 0),
                            100.0 * a.get("stored_whole", 0) / max(w.get("pages", 1), 1)))
    lines.append("speed runs: %s pages, %s repetitions (medians); density runs: %s pages"
                 % (params.get("pages"), params.get("reps"), params.get("density_pages")))
    contenders = report.get("contenders", {})
    order = [k for k in OURS + MALLOCS if k in contenders]

    # Density.
    lines.append("")
    lines.append("Density: memory used over the compressed bytes stored (lower is better)")
    model = report.get("model", {})
    rows = []
    for key in order:
        c = contenders[key]
        cells = [key]
        for algo in ("lz4", "zstd"):
            d = c.get("density", {}).get(algo, {})
            for state in DENSITY_STATES:
                cells.append(fmt_pct(d.get(state, {}).get("overhead")))
        ref = model.get("lz4", {}).get(key)
        kernel = KERNEL_OVERHEAD.get(key)
        anchor = ANCHOR_OVERHEAD.get(key)
        note = []
        if ref is not None:
            note.append("formula %s" % fmt_pct(ref))
        if kernel is not None:
            note.append("kernel %s" % fmt_pct(kernel))
        if anchor is not None:
            note.append("issue %s / %s" % (fmt_pct(anchor[0]), fmt_pct(anchor[1])))
        if c.get("skipped_too_large"):
            note.append("%d pages too large" % c["skipped_too_large"])
        cells.append("; ".join(note))
        rows.append(cells)
    lines.append(_table(["contender", "lz4 alloc", "churn", "compact", "zstd alloc", "churn",
                         "compact", "reference (lz4)"], rows,
                        ["<", ">", ">", ">", ">", ">", ">", "<"]))
    lines.append("  alloc: all stored; churn: a random half replaced 4 times, then a random half "
                 "freed; compact: zs_compact (ours) or")
    lines.append("  malloc_trim / purge / mi_collect (malloc family). Ours: pages * PAGE_SIZE; "
                 "malloc family: RssAnon delta.")
    lines.append("  formula: the kernel's zsmalloc formulas on the same objects; kernel: "
                 "Documentation/mm/zsmalloc.rst; issue: issue 10's anchors (alloc / compact).")

    # Speed.
    for title, phases in (("Speed, 1 thread: ops/s (ratio vs glibc malloc + memcpy)",
                           SPEED_PHASES),
                          ("Speed, 2 threads on virtual CPUs 0 and 1, one pool: ops/s (ratio "
                           "vs glibc)", THREAD_PHASES)):
        lines.append("")
        lines.append(title)
        rows = []
        for key in order:
            speed = contenders[key].get("speed", {})
            rows.append([key] + ["%s (%s)" % (fmt_rate(speed.get(p, {}).get("ops_per_sec")),
                                              fmt_ratio(speed.get(p, {}).get("vs_glibc")))
                                 for p in phases])
        lines.append(_table(["contender"] + phases, rows))
    lines.append("  store: into fresh memory (page faults included); refill: a freed random half "
                 "stored again; load: RO map + copy + unmap,")
    lines.append("  random order; free: random order; steady: 50/50 store/free at n/2 live; "
                 "churn: free + store pairs.")

    # Hardening.
    hard = report.get("hardening", {})
    if hard:
        lines.append("")
        lines.append("Hardening: extra time of the checks vs the unchecked build "
                     "(-DZPOOL_UNCHECKED=1), per phase: median over back-to-back pairs")
        phases = list(HARDENING_REPORT_PHASES)
        rows = []
        for key in HARDENED:
            if key not in hard:
                continue
            for level, label in (("cheap", "always-on"), ("full", "FULL")):
                row = hard[key].get(level, {})
                costs = [row.get(p, {}).get("cost") for p in phases]
                if any(c is not None for c in costs):
                    rows.append(["%s %s" % (key, label)] + [fmt_pct(c) for c in costs])
        lines.append(_table(["contender checks"] + phases, rows))

    # Lock checker.
    lock = report.get("lockdep")
    if lock:
        lines.append("")
        lines.append("Lock-order checker: ns per acquire+release, on / off")
        rows = [[name, "%.1f" % c["on_ns"], "%.1f" % c["off_ns"], "%+.1f" % c["overhead_ns"]]
                for name, c in lock.get("cases", {}).items()]
        lines.append(_table(["lock", "on", "off", "cost"], rows))
        point = lock.get("sched_point")
        if point:
            lines.append("scheduling point with no scheduler installed: %.2f ns per point "
                         "(%.2f ns with it, %.2f without; the target is <= 2 ns)"
                         % (point["cost_ns"], point["point_ns"], point["empty_ns"]))

    # Fuzzing.
    fuzz = report.get("fuzz")
    if fuzz:
        lines.append("")
        lines.append("Fuzzing: execs/s (operations/s where the target counts them), %s s "
                     "libFuzzer, %s s AFL++ runs"
                     % (params.get("libfuzzer_seconds"), params.get("afl_seconds")))
        rows = []
        names = sorted(fuzz, key=lambda n: (n != TRIVIAL, n))
        for name in names:
            cells = [name]
            for config, _label in FUZZ_CONFIGS:
                r = fuzz[name].get(config, {})
                if r.get("status") != "ok":
                    cells.append(r.get("status", "-"))
                    continue
                text = fmt_rate(r.get("execs_per_sec"))
                if r.get("ops_per_sec"):
                    text += " (%s ops)" % fmt_rate(r["ops_per_sec"])
                if r.get("finding"):
                    text += " [finding]"
                cells.append(text)
            rows.append(cells)
        lines.append(_table(["target"] + [label for _c, label in FUZZ_CONFIGS], rows))
        if any(r.get("finding") for t in fuzz.values() for r in t.values()):
            lines.append("  [finding]: the run stopped on a finding (the target's log is in "
                         "logs/fuzz-*.log); the rate is up to it.")

    # Targets.
    checks = report.get("targets", [])
    if checks:
        lines.append("")
        lines.append("Issue 10 targets")
        for c in checks:
            status = "n/a" if c["met"] is None else ("MET" if c["met"] else "MISSED")
            if c.get("kind") == "overhead":
                value, limit = fmt_pct(c["value"]), "<= " + fmt_pct(c["limit"], signed=False)
            else:
                value, limit = fmt_ratio(c["value"]), ">= " + fmt_ratio(c["limit"])
            lines.append("  %-7s %-55s %8s (%s; %s)" % (status, c["target"], value, limit,
                                                       c.get("detail", "")))
    failures = report.get("failures", [])
    if failures:
        lines.append("")
        lines.append("FAILURES")
        for f in failures:
            lines.append("  " + f)
    timings = report.get("timings", {})
    if timings:
        lines.append("")
        steps = [k for k in ("build", "workload", "density", "speed", "hardening", "lockdep",
                             "fuzz", "total")
                 if k in timings]
        steps += [k for k in timings if k not in steps]
        lines.append("time: " + ", ".join("%s %s" % (k, format_duration(timings[k]))
                                          for k in steps))
    return "\n".join(lines) + "\n"


def parse_libfuzzer_output(text):
    """execs, execs/s and the operations count (ZFUZZ_PRINT_OPS=1) from libFuzzer's output."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("stat::number_of_executed_units:"):
            out["execs"] = int(line.split(":")[-1])
        elif line.startswith("stat::average_exec_per_sec:"):
            out["execs_per_sec"] = float(line.split(":")[-1])
        elif line.startswith("zfuzz: operations executed:"):
            out["ops"] = int(line.split(":")[-1])
    if out.get("ops") is not None and out.get("execs") and out.get("execs_per_sec"):
        out["ops_per_sec"] = out["ops"] * out["execs_per_sec"] / out["execs"]
    return out


def parse_afl_stats(text):
    stats = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            stats[key.strip()] = value.strip()
    out = {}
    try:
        out["execs"] = int(stats.get("execs_done", "0"))
        out["execs_per_sec"] = float(stats.get("execs_per_sec", "0"))
        out["stability"] = stats.get("stability")
        out["crashes"] = int(stats.get("saved_crashes", stats.get("unique_crashes", "0")))
    except ValueError:
        pass
    return out


# ---- gnuplot -------------------------------------------------------------------------------------

def write_chart(report, out_dir):
    """density.dat, sizes.dat, bench.gp; runs gnuplot -> bench.png. Returns the PNG path or None."""
    contenders = report.get("contenders", {})
    order = [k for k in OURS + MALLOCS if k in contenders]
    density_path = os.path.join(out_dir, "density.dat")
    with open(density_path, "w") as f:
        f.write("# contender alloc(lz4) churn(lz4) compacted(lz4) alloc(zstd): "
                "compressed bytes / memory used\n")
        for key in order:
            d = contenders[key].get("density", {})
            vals = [d.get("lz4", {}).get(s, {}).get("density") for s in DENSITY_STATES]
            vals.append(d.get("zstd", {}).get("alloc", {}).get("density"))
            f.write("%s %s\n" % (key, " ".join("NaN" if v is None else "%.4f" % v for v in vals)))
    sizes_path = os.path.join(out_dir, "sizes.dat")
    algos = report.get("workload", {}).get("algos", {})
    bucket = report.get("workload", {}).get("bucket_bytes", 128)
    lz4 = algos.get("lz4", {}).get("histogram", [])
    zstd = algos.get("zstd", {}).get("histogram", [])
    with open(sizes_path, "w") as f:
        f.write("# bucket_start lz4_pages zstd_pages (last bucket: stored whole)\n")
        for i in range(max(len(lz4), len(zstd))):
            f.write("%d %d %d\n" % (i * bucket, lz4[i] if i < len(lz4) else 0,
                                    zstd[i] if i < len(zstd) else 0))
    png = os.path.join(out_dir, "bench.png")
    gp = os.path.join(out_dir, "bench.gp")
    n = max(len(order), 1)
    params = report.get("params", {})
    title = "zfuzz bench (%s): %s pages of /usr, %s" % (
        params.get("mode", "?"), report.get("workload", {}).get("pages", "?"),
        time.strftime("%Y-%m-%d", time.localtime(report.get("started", time.time()))))
    script = """\
set terminal pngcairo size 1400,1100 font "DejaVu Sans,10"
set output '{png}'
set multiplot layout 2,1 title "{title}"
set title "Density: compressed bytes / memory used (higher is better; ours: pages, malloc: RssAnon)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xrange [-0.6:{xmax}]
set yrange [0:1.25]
set ylabel "density"
set xtics rotate by -25 nomirror
set grid ytics
set key top right maxrows 2 width -2
plot '{density}' using 2:xtic(1) title 'allocate-only (LZ4)', \\
     '' using 3 title 'after churn (LZ4)', \\
     '' using 4 title 'after churn + compaction / trim (LZ4)', \\
     '' using 5 title 'allocate-only (zstd)', \\
     1/1.022 with lines dt 2 lw 2 lc rgb 'black' title 'kernel zsmalloc chain 8 (+2.2%)', \\
     1/1.043 with lines dt 3 lw 2 lc rgb 'gray40' title 'kernel zsmalloc chain 4 (+4.3%)'
unset xrange
set title "Compressed page sizes ({bucket}-byte buckets; the last bar: pages stored whole)"
set style data boxes
set style fill solid 0.6 border -1
set boxwidth {half} absolute
set xrange [0:{xend}]
set yrange [0:*]
set xtics 512 norotate
set xlabel "compressed size (bytes)"
set ylabel "pages"
set key top left
plot '{sizes}' using ($1+{q1}):2 title 'LZ4' lc rgb '#1f77b4', \\
     '' using ($1+{q3}):3 title 'zstd (level 3)' lc rgb '#ff7f0e'
unset multiplot
""".format(png=png, title=title, density=density_path, sizes=sizes_path, xmax=n - 0.4,
           bucket=bucket, half=bucket / 2 - 4, xend=(len(lz4) + 1) * bucket,
           q1=bucket / 4, q3=3 * bucket / 4)
    with open(gp, "w") as f:
        f.write(script)
    if shutil.which("gnuplot") is None:
        warn("gnuplot not found: %s written, no chart (apt-get install gnuplot-nox)" % gp)
        return None
    proc = subprocess.run(["gnuplot", gp], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace")
    if proc.returncode != 0 or not os.path.exists(png):
        warn("gnuplot failed: %s" % (proc.stdout.strip().splitlines() or ["?"])[-1])
        return None
    return png


# ---- running -------------------------------------------------------------------------------------

def bazel_build(flags, targets, log, work, name, keep_going=False):
    """bazel build; returns (exit code, the output's bin directory, labels that failed). The
    build's convenience symlinks go into `work` (--symlink_prefix), so the bin directory needs no
    `bazel info` and the workspace's bazel-bin is left alone. A target that failed may have an
    older binary in the bin directory: callers skip the failed labels."""
    prefix = os.path.join(work, "bazel-%s-" % name)
    bep = os.path.join(work, "bep-%s.json" % name)
    argv = ["bazel", "build"] + flags + ["--symlink_prefix=" + prefix,
                                         "--build_event_json_file=" + bep]
    if keep_going:
        argv.append("--keep_going")
    with open(log, "ab") as out:
        out.write(("$ %s\n" % " ".join(argv + targets)).encode())
        out.flush()
        proc = subprocess.run(argv + targets, cwd=REPO_ROOT, stdout=out,
                              stderr=subprocess.STDOUT)
    bindir = prefix + "bin"
    failed = set(targets) - built_labels(bep) if proc.returncode != 0 else set()
    return (proc.returncode, os.path.realpath(bindir) if os.path.exists(bindir) else None,
            failed)


def built_labels(bep_path):
    """Labels a build event file reports as built (targetCompleted with success: true). Proof by
    success only: proto3 JSON leaves `success: false` out, and a target that failed to load has
    no targetCompleted event at all."""
    built = set()
    try:
        with open(bep_path) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                done = event.get("id", {}).get("targetCompleted")
                if done and event.get("completed", {}).get("success") is True:
                    built.add(done.get("label"))
    except OSError:
        pass
    return built


def _common_flags():
    from .testcmd import bazel_common_flags
    return bazel_common_flags()


def build_alloc(work, logs):
    """Builds the benchmark binaries (checked and unchecked); copies them into `work` (so that a
    concurrent build in the same workspace cannot swap them mid-run). {name: path}."""
    bins = {}
    targets = ["//bench:bench_workload", "//bench:lock_bench"] + [
        "//bench:" + b for b in ALLOC_BINARIES]
    log = os.path.join(logs, "build-opt.log")
    flags = ["--config=opt"] + _common_flags()
    say("building //bench with --config=opt (log: %s)" % log)
    rc, bindir, _failed = bazel_build(flags, targets, log, work, "opt")
    if rc != 0 or bindir is None:
        for line in tail_of(log, 12).splitlines():
            print("  | " + line, file=sys.stderr)
        raise ZfuzzError("bazel build --config=opt //bench failed (log: %s)" % log)
    bindir = os.path.join(bindir, "bench")
    for name in ["bench_workload", "lock_bench"] + ALLOC_BINARIES:
        dst = os.path.join(work, name)
        shutil.copy2(os.path.join(bindir, name), dst)
        bins[name] = dst
    # The unchecked build (.bazelrc's opt-unchecked): its own output directory, so the checked
    # one stays built.
    log = os.path.join(logs, "build-opt-unchecked.log")
    flags = ["--config=opt-unchecked"] + _common_flags()
    say("building //bench:alloc_bench_ours with -DZPOOL_UNCHECKED=1 (log: %s)" % log)
    rc, bindir, _failed = bazel_build(flags, ["//bench:alloc_bench_ours"], log, work,
                                      "opt-unchecked")
    if rc != 0 or bindir is None:
        for line in tail_of(log, 12).splitlines():
            print("  | " + line, file=sys.stderr)
        raise ZfuzzError("the unchecked build failed (log: %s)" % log)
    src = os.path.join(bindir, "bench", "alloc_bench_ours")
    bins["alloc_bench_ours@unchecked"] = os.path.join(work, "alloc_bench_ours_unchecked")
    shutil.copy2(src, bins["alloc_bench_ours@unchecked"])
    return bins


def run_json(argv, log, timeout=900, env=None):
    """Runs a benchmark binary; (parsed JSON or None, one-line error or None)."""
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              errors="replace", timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return None, "%s: timed out after %d s" % (os.path.basename(argv[0]), timeout)
    with open(log, "a") as f:
        f.write("$ %s\n%s" % (" ".join(argv), proc.stderr))
    data = None
    try:
        data = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        pass
    if proc.returncode != 0:
        lines = [l for l in proc.stderr.splitlines() if l.strip()]
        return data, "%s %s: exit %d: %s" % (os.path.basename(argv[0]), " ".join(argv[1:5]),
                                             proc.returncode, lines[-1] if lines else "")
    if data is None:
        return None, "%s: no JSON output" % os.path.basename(argv[0])
    return data, None


def _entry_argv(bins, key, workload, seed, params, phases=None, algo="lz4", pages=None,
                pin=None):
    base = key.split("@")[0]
    binary, contender, _build = CONTENDERS[base]
    variant = key.split("@")[1] if "@" in key else ""
    path = bins[binary + "@unchecked"] if variant == "unchecked" else bins[binary]
    argv = [path, "--workload", workload, "--contender", contender, "--algo", algo,
            "--seed", str(seed), "--hardening", "full" if variant == "full" else "cheap",
            "--pages", str(pages or params["pages"]), "--inner", str(params["inner"])]
    if pin is not None:
        argv += ["--pin", str(pin)]
    if phases:
        argv += ["--phases", phases]
    return argv


def machine_info():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
            "memory_bytes": mem, "python": platform.python_version(), "loadavg_start": load}


def fuzz_throughput(params, work, logs):
    """{target: {config: result}} for every //fuzz:*_libfuzzer target and the trivial one."""
    proc = subprocess.run(["bazel", "query", 'attr(name, "_libfuzzer$", //fuzz:all)'],
                          cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise ZfuzzError("bazel query of the fuzz targets failed: %s"
                         % ((proc.stderr.strip().splitlines() or ["?"])[-1]))
    names = sorted(l.strip().rsplit(":", 1)[1][:-len("_libfuzzer")]
                   for l in proc.stdout.splitlines() if l.strip().endswith("_libfuzzer"))
    results = {n: {} for n in [TRIVIAL] + names}
    trivial_seeds = os.path.join(work, "trivial-seeds")
    os.makedirs(trivial_seeds, exist_ok=True)
    with open(os.path.join(trivial_seeds, "seed"), "w") as f:
        f.write("a\n")
    for config, label in FUZZ_CONFIGS:
        engine = "afl" if config == "afl" else "libfuzzer"
        targets = (["//fuzz:%s_%s" % (n, engine) for n in names]
                   + ["//bench:trivial_fuzz_" + engine])
        log = os.path.join(logs, "build-%s.log" % config)
        flags = ["--config=" + config] + _common_flags()
        say("building %d fuzz targets with --config=%s (log: %s)" % (len(targets), config, log))
        _rc, bindir, failed = bazel_build(flags, targets, log, work, config, keep_going=True)
        for name in [TRIVIAL] + names:
            target = ("//bench:trivial_fuzz_" + engine if name == TRIVIAL
                      else "//fuzz:%s_%s" % (name, engine))
            if bindir is None or target in failed:
                results[name][config] = {"status": "build failed"}
                continue
            if name == TRIVIAL:
                binary = os.path.join(bindir, "bench", "trivial_fuzz_" + engine)
                seeds = trivial_seeds
            else:
                binary = os.path.join(bindir, "fuzz", "%s_%s" % (name, engine))
                seeds = os.path.join(REPO_ROOT, "corpus", name)
                if not os.path.isdir(seeds) or not os.listdir(seeds):
                    seeds = trivial_seeds
            if not os.path.exists(binary):
                results[name][config] = {"status": "build failed"}
                continue
            run_log = os.path.join(logs, "fuzz-%s-%s.log" % (name.split()[0], config))
            watch = Stopwatch()
            if engine == "libfuzzer":
                r = run_libfuzzer(binary, seeds, params, work, run_log)
            else:
                r = run_afl(binary, seeds, params, work, run_log)
            r["wall_seconds"] = watch.seconds()
            r["seeds"] = "trivial" if seeds == trivial_seeds else os.path.relpath(seeds, REPO_ROOT)
            results[name][config] = r
            say("  %-28s %-15s %s" % (name, label, r.get("status") if r.get("status") != "ok"
                                      else "%s execs/s" % fmt_rate(r.get("execs_per_sec"))))
    return results


def run_libfuzzer(binary, seeds, params, work, log):
    corpus = tempfile.mkdtemp(prefix="lf-corpus-", dir=work)
    for name in os.listdir(seeds):
        src = os.path.join(seeds, name)
        if os.path.isfile(src):
            shutil.copy(src, corpus)
    artifacts = tempfile.mkdtemp(prefix="lf-artifacts-", dir=work) + "/"
    seconds = params["libfuzzer_seconds"]
    env = dict(os.environ, ZFUZZ_PRINT_OPS="1")
    argv = [binary, "-max_total_time=%d" % seconds, "-print_final_stats=1",
            "-artifact_prefix=" + artifacts, corpus]
    with open(log, "w") as out:
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  timeout=seconds + 120)
        except subprocess.TimeoutExpired:
            return {"status": "timeout"}
    r = parse_libfuzzer_output(tail_of(log, 400))
    r["seconds"] = seconds
    if not r.get("execs"):
        r["status"] = "exit %d, no execs" % proc.returncode if proc.returncode else "no execs"
    else:
        # A finding ends the run early; the rate up to it still counts (libFuzzer prints its
        # final stats on a crash too).
        r["status"] = "ok"
        if proc.returncode != 0:
            r["finding"] = "exit %d" % proc.returncode
    return r


def run_afl(binary, seeds, params, work, log):
    out_dir = tempfile.mkdtemp(prefix="afl-out-", dir=work)
    seconds = params["afl_seconds"]
    env = dict(os.environ, AFL_NO_UI="1", AFL_SKIP_CPUFREQ="1", AFL_NO_AFFINITY="1",
               AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES="1", AFL_FAST_CAL="1", AFL_SKIP_CRASHES="1")
    argv = ["afl-fuzz", "-V", str(seconds), "-i", seeds, "-o", out_dir, "--", binary]
    with open(log, "w") as out:
        try:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, env=env,
                                  timeout=seconds + 120)
        except FileNotFoundError:
            return {"status": "no afl-fuzz"}
        except subprocess.TimeoutExpired:
            return {"status": "timeout"}
    stats_path = os.path.join(out_dir, "default", "fuzzer_stats")
    if not os.path.exists(stats_path):
        return {"status": "failed (exit %d)" % proc.returncode}
    with open(stats_path) as f:
        r = parse_afl_stats(f.read())
    r["seconds"] = seconds
    r["status"] = "ok" if r.get("execs") else "no execs"
    if r.get("crashes"):
        r["finding"] = "%d crashes" % r["crashes"]
    return r


def run_bench(args):
    params = resolve_params(args.mode, args.reps, args.pages)
    out_dir = check_out_dir(args.out)
    logs = os.path.join(out_dir, "logs")
    os.makedirs(logs, exist_ok=True)
    for name in os.listdir(logs):
        if name.endswith(".log"):
            os.unlink(os.path.join(logs, name))
    # The Debian packages the benchmarks need (compressors, jemalloc, mimalloc, gnuplot, AFL++,
    # Bazel) come with the project's set-up; install whatever is missing, as `test` does.
    from . import setup
    if setup.missing_packages():
        setup.install_packages()
    if shutil.which("bazel") is None:
        raise ZfuzzError("bazel not found (tools/zfuzz setup installs it)")
    total = Stopwatch()
    timings = {}
    failures = []
    report = {"params": params, "started": time.time(),
              "command": " ".join(["tools/zfuzz"] + sys.argv[1:]),
              "machine": machine_info()}
    work = tempfile.mkdtemp(prefix="zfuzz-bench-")
    try:
        watch = Stopwatch()
        bins = build_alloc(work, logs)
        timings["build"] = watch.seconds()

        # Every single-threaded run on the CPU that was idlest over a second (the same CPU
        # for all contenders; the 2-thread phase uses it and the next one).
        pin = None
        try:
            with open("/proc/stat") as f:
                before = parse_proc_stat(f.read())
            time.sleep(1.0)
            with open("/proc/stat") as f:
                pin = pick_cpu(before, parse_proc_stat(f.read()))
        except OSError:
            pass
        report["machine"]["pinned_cpu"] = pin

        watch = Stopwatch()
        workload = os.path.join(work, "workload.bin")
        say("workload: %d pages of /usr, LZ4 and zstd" % params["workload_pages"])
        proc = subprocess.run([bins["bench_workload"], "--pages", str(params["workload_pages"]),
                               "--seed", "1", "--out", workload], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        if proc.returncode != 0:
            raise ZfuzzError("bench_workload failed: %s" % (proc.stderr.strip().splitlines()
                                                            or ["?"])[-1])
        report["workload"] = json.loads(proc.stdout)
        timings["workload"] = watch.seconds()
        probe, _ = run_json([bins["alloc_bench_glibc"], "--page-fault-probe"],
                            os.path.join(logs, "probe.log"))
        if probe:
            report["machine"]["page_fault_us"] = probe.get("page_fault_us")

        # The kernel formulas on the density runs' objects.
        page_size, sizes = read_workload_sizes(workload, params["density_pages"])
        report["model"] = {}
        for a, algo in enumerate(("lz4", "zstd")):
            lens = [s[a] for s in sizes]
            total_bytes = float(sum(lens))
            report["model"][algo] = {
                key: kernel_model_pages(lens, chain, page_size) * page_size / total_bytes - 1
                for key, chain in (("zsmalloc", 8), ("zsmalloc-cs4", 4),
                                   ("zpool-zsmalloc", 8), ("zpool-zsmalloc-cs4", 4))}

        # Density runs: each contender once per compressor. Memory, not time, is measured
        # here, so two run at once (one per CPU).
        watch = Stopwatch()
        density_runs = {"lz4": {}, "zstd": {}}
        # When the speed runs use the density runs' pages, their lz4 densities are those.
        reuse = params["density_pages"] == params["pages"]
        jobs = []
        for algo in ("zstd",) if reuse else ("lz4", "zstd"):
            for key in OURS + MALLOCS:
                if algo == "zstd" and key.startswith("zpool-"):
                    continue  # the backend's density: zpool adds no memory (shown with lz4)
                jobs.append((algo, key))

        def density_job(job):
            algo, key = job
            argv = _entry_argv(bins, key, workload, 1, params, phases="store,churn", algo=algo,
                               pages=params["density_pages"])
            return job, run_json(argv, os.path.join(logs, "density-%s-%s.log" % (algo, key)))

        say("density runs: %d (%d pages each, two at a time)"
            % (len(jobs), params["density_pages"]))
        with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
            for (algo, key), (data, err) in pool.map(density_job, jobs):
                if err:
                    failures.append("density %s %s: %s" % (algo, key, err))
                if data:
                    density_runs[algo].setdefault(key, []).append(data)
        timings["density"] = watch.seconds()

        # Speed runs, interleaved.
        watch = Stopwatch()
        speed_runs = {}
        entries = [(k, None) for k in OURS + MALLOCS]
        log = os.path.join(logs, "speed.log")
        for rep in range(params["reps"]):
            say("speed repetition %d/%d (%d runs)" % (rep + 1, params["reps"], len(entries)))
            shift = rep % len(entries)
            for key, phases in entries[shift:] + entries[:shift]:
                data, err = run_json(_entry_argv(bins, key, workload, rep + 1, params,
                                                 phases=phases, pin=pin), log)
                if err:
                    failures.append("speed %s rep %d: %s" % (key, rep + 1, err))
                if data:
                    speed_runs.setdefault(key, []).append(data)
        timings["speed"] = watch.seconds()

        watch = Stopwatch()
        levels = ["cheap"] + [l for l in params["hardening"] if l == "full"]
        say("hardening pairs: %s, %d pairs each (unchecked vs %s)"
            % (", ".join(HARDENED), params["hardening_pairs"], " and ".join(levels)))
        hardening_pairs = {}
        hparams = dict(params, inner=params["hardening_inner"])
        for i in range(params["hardening_pairs"]):
            for key in HARDENED:
                order = ["unchecked"] + levels
                if i % 2:
                    order.reverse()
                pair = {}
                for level in order:
                    run_key = key if level == "cheap" else key + "@" + level
                    data, err = run_json(_entry_argv(bins, run_key, workload, i + 1, hparams,
                                                     phases=HARDENING_PHASES, pin=pin), log)
                    if err:
                        failures.append("hardening %s pair %d: %s" % (run_key, i + 1, err))
                    pair[level] = data
                hardening_pairs.setdefault(key, []).append(pair)
        timings["hardening"] = watch.seconds()

        if reuse:
            density_runs["lz4"] = {k: v for k, v in speed_runs.items() if "@" not in k}
        report["runs"] = {"speed": speed_runs, "density": density_runs,
                          "hardening_pairs": hardening_pairs}
        report["contenders"] = merge_results(
            {k: v for k, v in speed_runs.items() if "@" not in k}, density_runs)
        report["hardening"] = hardening_summary(hardening_pairs)
        report["targets"] = check_targets(report["contenders"], report["hardening"],
                                          report["model"].get("lz4"))

        watch = Stopwatch()
        lock, err = run_json([bins["lock_bench"], "--iters", str(params["lock_iters"]),
                              "--reps", str(params["lock_reps"])],
                             os.path.join(logs, "lock_bench.log"))
        if err:
            failures.append("lock_bench: " + err)
        report["lockdep"] = lock
        timings["lockdep"] = watch.seconds()

        if not args.no_fuzz:
            watch = Stopwatch()
            report["fuzz"] = fuzz_throughput(params, work, logs)
            timings["fuzz"] = watch.seconds()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    timings["total"] = total.seconds()
    try:
        report["machine"]["loadavg_end"] = list(os.getloadavg())
    except OSError:
        pass
    report["timings"] = timings
    report["failures"] = failures
    table = format_report(report)
    png = write_chart(report, out_dir)
    report["chart"] = png
    with open(os.path.join(out_dir, "bench.json"), "w") as f:
        json.dump(report, f, indent=1)
    with open(os.path.join(out_dir, "table.txt"), "w") as f:
        f.write(table)
    print()
    print(table, end="")
    print("\nwritten: %s, %s%s" % (os.path.join(out_dir, "bench.json"),
                                   os.path.join(out_dir, "table.txt"),
                                   ", " + png if png else ""))
    return 1 if failures else 0
