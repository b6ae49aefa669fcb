# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz coverage`: what the checked-in corpus covers of zpool/, by clang source-based
coverage.

Steps:
  1. build //fuzz:<target>_replay of each target with --config=coverage (-fprofile-instr-generate
     -fcoverage-mapping, the replay engine), its convenience symlinks in a temporary directory
     (--symlink_prefix) so the workspace's bazel-bin is left alone; the binaries are copied to
     <out>/bin;
  2. run each on corpus/<target>/ and corpus/regressions/<target>/ (ZPOOL_NR_CPUS=4, as the
     tests run), LLVM_PROFILE_FILE=<out>/profiles/<target>-%p.profraw;
  3. llvm-profdata-19 merge -sparse into <out>/coverage.profdata;
  4. llvm-cov-19 export (JSON, every binary an -object) for the per-file line, branch and
     function figures of the sources under zpool/ (tests excluded), printed as a table with a
     total row and written to <out>/coverage.json with the uncovered line ranges (and their
     functions) of zbud.cc, zsmalloc.cc and zpool.cc, from `llvm-cov-19 show`'s text output;
  5. llvm-cov-19 show -format=html into <out>/html (unless --no-html).
With --min-lines PCT, exit 1 if zbud.cc, zsmalloc.cc or zpool.cc is below PCT% of lines.

Bazel compiles with relative paths and the coverage mapping names files /proc/self/cwd/<path>:
llvm-cov runs from the repository root with -path-equivalence=/proc/self/cwd,<root>, and the
report names files relative to the root.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from .common import (REPO_ROOT, Stopwatch, ZfuzzError, format_duration, last_line, say, tail_of,
                     warn, which, writable_dir)
from . import targets as targets_mod
from .testcmd import bazel_common_flags

LLVM_PROFDATA = "llvm-profdata-19"
LLVM_COV = "llvm-cov-19"
LLVM_CXXFILT = "llvm-cxxfilt-19"
# The acceptance files of --min-lines (the allocators and the API over them).
CHECKED_FILES = ("zpool/zbud.cc", "zpool/zsmalloc.cc", "zpool/zpool.cc")
DEFAULT_OUT = os.path.join(REPO_ROOT, "out", "coverage")
# How Bazel's compile paths appear in the coverage mapping (it compiles from the execroot with
# relative paths; the toolchain maps the working directory to /proc/self/cwd).
MAPPING_PREFIX = "/proc/self/cwd"
# llvm-cov prints this when several binaries define one symbol differently: each harness has its
# own LLVMFuzzerTestOneInput (under fuzz/, not reported); zpool/ code is the same in every binary.
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
KNOWN_WARNING = re.compile(r"^warning: \d+ functions? ha(s|ve) mismatched data$")


def add_parser(sub):
    p = sub.add_parser(
        "coverage",
        help="line/branch coverage of zpool/ by the checked-in corpus (clang source-based)",
        description="Builds each fuzz target's replay binary with --config=coverage, replays "
        "corpus/<target>/ and corpus/regressions/<target>/, merges the profiles and prints "
        "per-file line, branch and function coverage of the sources under zpool/ (tests "
        "excluded) with a total row. Writes coverage.json, coverage.profdata, uncovered.txt "
        "and an HTML report (html/index.html) to --out.")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="fuzz targets (names in fuzz/BUILD; default: all of them)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="directory for the report, profiles and binaries (default: %(default)s)")
    p.add_argument("--html", action=argparse.BooleanOptionalAction, default=True,
                   help="write the HTML report to OUT/html (default: yes)")
    p.add_argument("--min-lines", metavar="PCT", default=None,
                   help="exit 1 if any of {} covers less than PCT%% of its lines".format(
                       ", ".join(os.path.basename(f) for f in CHECKED_FILES)))
    p.add_argument("--uncovered", action="store_true",
                   help="also print the uncovered line ranges of %s and their functions"
                   % ", ".join(os.path.basename(f) for f in CHECKED_FILES))
    p.set_defaults(func=run_coverage)



# ---- fuzz targets (fuzz/BUILD) -----------------------------------------------------------------

def fuzz_targets(root=REPO_ROOT):
    """Names of the fuzz targets declared in fuzz/BUILD, in file order."""
    return list(targets_mod.list_targets(os.path.join(root, "fuzz", "BUILD")))


def resolve_targets(requested, known):
    """The targets to measure: all known ones by default; `x` or `//fuzz:x`, each once."""
    return targets_mod.check_targets(requested, known)


def corpus_dirs(target, root=REPO_ROOT):
    """corpus/<target>/ (required) and corpus/regressions/<target>/ (if present), absolute."""
    seeds = os.path.join(root, "corpus", target)
    if not os.path.isdir(seeds):
        raise ZfuzzError("corpus/%s/ does not exist: nothing to replay for %s" % (target, target))
    dirs = [seeds]
    regressions = os.path.join(root, "corpus", "regressions", target)
    if os.path.isdir(regressions):
        dirs.append(regressions)
    return dirs


# ---- arguments ---------------------------------------------------------------------------------

def parse_min_lines(text):
    if text is None:
        return None
    try:
        value = float(str(text).strip().rstrip("%"))
    except ValueError:
        raise ZfuzzError("--min-lines: %r is not a percentage" % text, exit_code=2)
    if not 0 <= value <= 100:
        raise ZfuzzError("--min-lines: %g is not in 0..100" % value, exit_code=2)
    return value


def check_out_dir(path, root=REPO_ROOT):
    """Creates --out if needed; refuses the corpus (and the repository root itself)."""
    real = os.path.realpath(path)
    corpus = os.path.realpath(os.path.join(root, "corpus"))
    if real == corpus or real.startswith(corpus + os.sep):
        raise ZfuzzError("--out %s: inside corpus/ (the report must not mix with seeds)" % path,
                         exit_code=2)
    if real == os.path.realpath(root):
        raise ZfuzzError("--out %s: the repository root; give a directory of its own" % path,
                         exit_code=2)
    writable_dir(real)
    return real


def check_tools(names=(LLVM_PROFDATA, LLVM_COV, "bazel")):
    missing = [n for n in names if which(n) is None]
    if missing:
        raise ZfuzzError("%s not found (Debian package llvm-19 / bazel-bootstrap; "
                         "tools/zfuzz setup installs them)" % ", ".join(missing))


# ---- llvm-cov's output -------------------------------------------------------------------------

def relative_source(filename, root=REPO_ROOT):
    """A coverage-mapping file name relative to the repository root (as-is if outside it)."""
    for prefix in (MAPPING_PREFIX, os.path.realpath(root), root):
        prefix = prefix.rstrip("/") + "/"
        if filename.startswith(prefix):
            return filename[len(prefix):]
    return filename


# The kernel's own allocator files, as the upstream targets compile them (@linux_source).
UPSTREAM_PREFIX = "external/linux_source/mm/"


def is_reported(relpath):
    """Sources of the report: under zpool/ (not tests, not zpool/testing/), and the kernel's
    own mm/ files that the upstream targets link."""
    if relpath.startswith(UPSTREAM_PREFIX):
        return True
    return (relpath.startswith("zpool/") and not relpath.endswith("_test.cc")
            and not relpath.startswith("zpool/testing/"))


def pct(covered, total):
    return 100.0 * covered / total if total else None


def summarize(export, root=REPO_ROOT):
    """llvm-cov export JSON -> (rows, total). A row: {file, lines, branches, functions}, each
    metric {covered, count, percent}; files outside the report are dropped; the total sums the
    rows (not llvm-cov's totals, which count every file of every binary)."""
    try:
        files = export["data"][0]["files"]
    except (KeyError, IndexError, TypeError):
        raise ZfuzzError("llvm-cov export: unexpected JSON (no data[0].files)")
    merged = {}
    for entry in files:
        rel = relative_source(entry.get("filename", ""), root)
        if not is_reported(rel):
            continue
        summary = entry.get("summary", {})
        row = merged.setdefault(rel, {"file": rel, "lines": [0, 0], "branches": [0, 0],
                                      "functions": [0, 0]})
        for metric in ("lines", "branches", "functions"):
            m = summary.get(metric, {})
            row[metric][0] += int(m.get("covered", 0))
            row[metric][1] += int(m.get("count", 0))
    rows = []
    total = {"file": "TOTAL", "lines": [0, 0], "branches": [0, 0], "functions": [0, 0]}
    for rel in sorted(merged):
        row = merged[rel]
        if not any(row[m][1] for m in ("lines", "branches", "functions")):
            continue  # nothing instrumented (declarations only)
        for metric in ("lines", "branches", "functions"):
            total[metric][0] += row[metric][0]
            total[metric][1] += row[metric][1]
        rows.append(_finish(row))
    return rows, _finish(total)


def _finish(row):
    out = {"file": row["file"]}
    for metric in ("lines", "branches", "functions"):
        covered, count = row[metric]
        out[metric] = {"covered": covered, "count": count, "percent": pct(covered, count)}
    return out


def _cell(metric):
    if not metric["count"]:
        return "-"
    return "%d/%d %5.1f%%" % (metric["covered"], metric["count"], metric["percent"])


def format_table(rows, total):
    headers = ("file", "lines", "branches", "functions")
    body = [(r["file"], _cell(r["lines"]), _cell(r["branches"]), _cell(r["functions"]))
            for r in rows]
    foot = (total["file"], _cell(total["lines"]), _cell(total["branches"]),
            _cell(total["functions"]))
    widths = [max(len(str(x[i])) for x in [headers] + body + [foot]) for i in range(4)]

    def line(cells):
        return "  ".join(str(c).ljust(widths[0]) if i == 0 else str(c).rjust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule] + [line(b) for b in body] + [rule, line(foot)])


def below_threshold(rows, min_pct, files=CHECKED_FILES):
    """[(file, line percent)] of the checked files under min_pct. ZfuzzError if none of them is
    in the report (the selected targets do not link them: the threshold would prove nothing)."""
    by_file = {r["file"]: r for r in rows}
    present = [f for f in files if f in by_file]
    if not present:
        raise ZfuzzError("--min-lines: none of %s is linked by the selected targets"
                         % ", ".join(files))
    low = []
    for f in present:
        percent = by_file[f]["lines"]["percent"] or 0.0
        if percent < min_pct:
            low.append((f, percent))
    return low


_SHOW_LINE = re.compile(r"^\s*(\d+)\|\s*([^|]*?)\s*\|")


def parse_show_uncovered(text, root=REPO_ROOT):
    """`llvm-cov show` text -> {relative file: [(first, last) uncovered line ranges]}.

    A line is uncovered when its count is 0 (llvm-cov's line metric); lines without a count
    (comments, blank lines) do not break a range, covered lines do."""
    ranges = {}
    current = None
    start = end = None

    def close():
        if current is not None and start is not None:
            ranges.setdefault(current, []).append((start, end))

    for raw in text.splitlines():
        if raw.endswith(":") and not raw.startswith(" ") and "|" not in raw:
            close()
            start = end = None
            current = relative_source(raw[:-1], root)
            ranges.setdefault(current, [])
            continue
        m = _SHOW_LINE.match(raw)
        if not m or current is None:
            continue
        number, count = int(m.group(1)), m.group(2)
        if count == "0":
            if start is None:
                start = number
            end = number
        elif count:
            close()
            start = end = None
    close()
    return ranges


def function_spans(export, root=REPO_ROOT):
    """{relative file: [(first line, last line, mangled name)]} from a full llvm-cov export
    (the first region of a function spans its body); one entry per distinct span and name."""
    spans = {}
    try:
        functions = export["data"][0].get("functions", [])
    except (KeyError, IndexError, TypeError):
        return spans
    for fn in functions:
        regions = fn.get("regions") or []
        filenames = fn.get("filenames") or []
        if not regions or not filenames:
            continue
        first = regions[0]
        rel = relative_source(filenames[first[5]] if len(first) > 5 and first[5] < len(filenames)
                              else filenames[0], root)
        entry = (int(first[0]), int(first[2]), fn.get("name", "?"))
        spans.setdefault(rel, set()).add(entry)
    return {f: sorted(s) for f, s in spans.items()}


def innermost_function(spans, line):
    """The mangled name of the smallest function span containing `line`, or None."""
    best = None
    for first, last, name in spans:
        if first <= line <= last and (best is None or last - first < best[1] - best[0]):
            best = (first, last, name)
    return best[2] if best else None


def strip_file_prefix(name):
    """Local functions are named `file.cc:_Z...` in the profile; the symbol is after the colon."""
    head, sep, tail = name.partition(":")
    return tail if sep and head.endswith((".cc", ".h", ".cpp")) else name


def demangle(names):
    """Mangled -> readable names through llvm-cxxfilt-19 (unchanged if it is missing)."""
    names = sorted(set(names))
    if not names or which(LLVM_CXXFILT) is None:
        return {n: n for n in names}
    proc = subprocess.run([LLVM_CXXFILT], input="\n".join(strip_file_prefix(n) for n in names),
                          stdout=subprocess.PIPE, text=True, errors="replace")
    out = proc.stdout.splitlines()
    if proc.returncode != 0 or len(out) != len(names):
        return {n: n for n in names}
    return dict(zip(names, out))


def short_function(name):
    """`(anonymous namespace)::zbud_alloc(zbud_pool*, ...)` -> `zbud_alloc`, for the listing."""
    name = name.replace("(anonymous namespace)::", "")
    depth, cut = 0, len(name)
    for i, ch in enumerate(name):
        if ch in "<(":
            if depth == 0 and ch == "(":
                cut = i
                break
            depth += 1
        elif ch in ">)":
            depth -= 1
    return name[:cut] or name


def annotate_uncovered(ranges, spans):
    """{file: [(first, last)]} -> {file: [{first, last, lines, function}]}."""
    raw = {}
    for f, items in ranges.items():
        raw[f] = [(a, b, innermost_function(spans.get(f, []), a)) for a, b in items]
    names = demangle([n for items in raw.values() for _, _, n in items if n])
    out = {}
    for f, items in raw.items():
        out[f] = [{"first": a, "last": b, "lines": b - a + 1,
                   "function": short_function(names.get(n, n)) if n else None}
                  for a, b, n in items]
    return out


def format_uncovered(uncovered, counts=None):
    """Per file, the functions with uncovered lines in source order, each with its ranges."""
    lines = []
    for f in sorted(uncovered):
        items = uncovered[f]
        total = (counts or {}).get(f)
        lines.append("%s: %d uncovered line(s) in %d range(s)%s"
                     % (f, sum(i["lines"] for i in items), len(items),
                        "" if total is None else " (of %d lines)" % total))
        groups = []  # [function, [ranges], lines], in order of first appearance
        for i in items:
            name = i["function"] or "(macro body or initializer)"
            where = "%d" % i["first"] if i["first"] == i["last"] else "%d-%d" % (i["first"],
                                                                               i["last"])
            if groups and groups[-1][0] == name:
                groups[-1][1].append(where)
                groups[-1][2] += i["lines"]
            else:
                groups.append([name, [where], i["lines"]])
        for name, where, count in groups:
            lines.append("  %-34s %4d  %s" % (name, count, ", ".join(where)))
    return "\n".join(lines)


def ignore_regex(root=REPO_ROOT):
    """-ignore-filename-regex: everything of the binaries that is not a zpool/ source."""
    prefixes = "|".join(re.escape(p.rstrip("/") + "/")
                        for p in sorted({MAPPING_PREFIX, os.path.realpath(root)}))
    # external/ is left out but for external/linux_source/ (POSIX regex: no lookahead).
    return (r"^(%s)?(fuzz|tools|third_party|bazel-out)/|^(%s)?external/([^l]|l[^i]|li[^n])"
            r"|_test\.cc$|^(%s)?zpool/testing/" % (prefixes, prefixes, prefixes))


# ---- the run -----------------------------------------------------------------------------------

def _bazel_build(targets, work, log):
    prefix = os.path.join(work, "bazel-")
    labels = ["//fuzz:%s_replay" % t for t in targets]
    argv = (["bazel", "build", "--config=coverage"] + bazel_common_flags()
            + ["--symlink_prefix=" + prefix, "--"] + labels)
    say("building %d replay binaries with --config=coverage (log: %s)" % (len(labels), log))
    with open(log, "ab") as out:
        out.write(("$ %s\n" % " ".join(argv)).encode())
        out.flush()
        proc = subprocess.run(argv, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        for line in tail_of(log, 15).splitlines():
            print("  | " + line, file=sys.stderr)
        raise ZfuzzError("bazel build --config=coverage failed (log: %s)" % log)
    bindir = os.path.join(os.path.realpath(prefix + "bin"), "fuzz")
    if not os.path.isdir(bindir):
        raise ZfuzzError("bazel build: no output directory %s" % bindir)
    return bindir


def _replay(target, binary, profiles, log):
    """Runs the replay binary on the target's corpus; the number of inputs replayed."""
    dirs = corpus_dirs(target)
    env = dict(os.environ, LLVM_PROFILE_FILE=os.path.join(profiles, target + "-%p.profraw"),
               ZPOOL_NR_CPUS="4")
    argv = [binary] + dirs
    with open(log, "ab") as out:
        out.write(("$ %s\n" % " ".join(argv)).encode())
        out.flush()
        proc = subprocess.run(argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        for line in tail_of(log, 10).splitlines():
            print("  | " + line, file=sys.stderr)
        raise ZfuzzError("%s_replay failed on its corpus with exit code %d (log: %s)"
                         % (target, proc.returncode, log))
    inputs = 0
    for line in tail_of(log, 5).splitlines():
        m = re.match(r"replay: (\d+) inputs? replayed", line)
        if m:
            inputs = int(m.group(1))
    if not glob.glob(os.path.join(profiles, target + "-*.profraw")):
        raise ZfuzzError("%s_replay wrote no profile (is it built with --config=coverage?)"
                         % target)
    return inputs


def _llvm_cov(argv, step, capture=True):
    say("$ " + " ".join(argv[:2] + ["..."]))
    try:
        proc = subprocess.run(argv, cwd=REPO_ROOT, stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.PIPE, text=True, errors="replace")
    except FileNotFoundError:
        raise ZfuzzError("%s: command not found: %s" % (step, argv[0]))
    for line in (proc.stderr or "").splitlines():
        line = ANSI_ESCAPE.sub("", line).strip()
        if line and not KNOWN_WARNING.match(line):
            warn("%s: %s" % (step, line))
    if proc.returncode != 0:
        raise ZfuzzError("%s failed with exit code %d: %s"
                         % (step, proc.returncode, last_line(proc.stderr) or "no message"))
    return proc.stdout


def run_coverage(args):
    watch = Stopwatch()
    min_lines = parse_min_lines(args.min_lines)
    targets = resolve_targets(args.targets, fuzz_targets())
    for t in targets:
        corpus_dirs(t)
    check_tools()
    out = check_out_dir(args.out)
    logs = os.path.join(out, "logs")
    bin_out = os.path.join(out, "bin")
    profiles = os.path.join(out, "profiles")
    for d in (logs, bin_out, profiles):
        os.makedirs(d, exist_ok=True)
    for stale in (glob.glob(os.path.join(profiles, "*.profraw"))
                  + glob.glob(os.path.join(logs, "*.log"))):
        os.unlink(stale)
    say("coverage of %d target(s) into %s" % (len(targets), out))

    work = tempfile.mkdtemp(prefix="zfuzz-coverage-")
    try:
        bindir = _bazel_build(targets, work, os.path.join(logs, "bazel-build.log"))
        binaries = []
        for t in targets:
            dst = os.path.join(bin_out, t + "_replay")
            if os.path.exists(dst):
                os.unlink(dst)
            shutil.copy2(os.path.join(bindir, t + "_replay"), dst)
            os.chmod(dst, 0o755)
            binaries.append(dst)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    inputs = {}
    for t, binary in zip(targets, binaries):
        inputs[t] = _replay(t, binary, profiles, os.path.join(logs, "replay-%s.log" % t))
        say("replayed %s: %d inputs" % (t, inputs[t]))

    profdata = os.path.join(out, "coverage.profdata")
    raws = sorted(glob.glob(os.path.join(profiles, "*.profraw")))
    _llvm_cov([LLVM_PROFDATA, "merge", "-sparse"] + raws + ["-o", profdata],
              "llvm-profdata merge")

    objects = [binaries[0]] + [a for b in binaries[1:] for a in ("-object", b)]
    common = ["-instr-profile=" + profdata,
              "-path-equivalence=%s,%s" % (MAPPING_PREFIX, REPO_ROOT)]
    export = json.loads(_llvm_cov([LLVM_COV, "export", "-skip-expansions"] + common + objects,
                                  "llvm-cov export") or "{}")
    rows, total = summarize(export)
    if not rows:
        raise ZfuzzError("llvm-cov export: no zpool/ source in the coverage data")

    checked = [f for f in CHECKED_FILES if any(r["file"] == f for r in rows)]
    uncovered = {}
    if checked:
        text = _llvm_cov([LLVM_COV, "show", "-use-color=false", "-show-instantiations=false"]
                         + common + objects
                         + [os.path.join(REPO_ROOT, f) for f in checked], "llvm-cov show")
        uncovered = annotate_uncovered(parse_show_uncovered(text), function_spans(export))
        uncovered = {f: v for f, v in uncovered.items() if f in checked}
    counts = {r["file"]: r["lines"]["count"] for r in rows}
    with open(os.path.join(out, "uncovered.txt"), "w") as f:
        f.write(format_uncovered(uncovered, counts) + "\n")

    html_index = None
    if args.html:
        html = os.path.join(out, "html")
        shutil.rmtree(html, ignore_errors=True)
        argv = ([LLVM_COV, "show", "-format=html", "-output-dir=" + html,
                 "-show-line-counts-or-regions", "-show-branches=count",
                 "-show-instantiations=false", "-project-title=zfuzz: zpool/ by the corpus",
                 "-ignore-filename-regex=" + ignore_regex()]
                + (["-Xdemangler=" + LLVM_CXXFILT] if which(LLVM_CXXFILT) else [])
                + common + objects + [os.path.join(REPO_ROOT, r["file"]) for r in rows])
        _llvm_cov(argv, "llvm-cov show -format=html", capture=False)
        html_index = os.path.join(html, "index.html")

    low, threshold_error = [], None
    if min_lines is not None:
        try:
            low = below_threshold(rows, min_lines)
        except ZfuzzError as e:
            threshold_error = e  # raised once the table is printed
    report = {
        "targets": targets,
        "inputs": inputs,
        "files": rows,
        "total": total,
        "checked_files": checked,
        "min_lines": min_lines,
        "below_min_lines": [{"file": f, "lines_percent": p} for f, p in low],
        "uncovered": uncovered,
        "profdata": profdata,
        "binaries": binaries,
        "html": html_index,
    }
    with open(os.path.join(out, "coverage.json"), "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")

    print()
    print(format_table(rows, total))
    if args.uncovered and uncovered:
        print()
        print(format_uncovered(uncovered, counts))
    print()
    print("%d inputs of %d target(s) in %s" % (sum(inputs.values()), len(targets),
                                               format_duration(watch.seconds())))
    print("report: %s" % os.path.join(out, "coverage.json"))
    print("uncovered lines: %s" % os.path.join(out, "uncovered.txt"))
    if html_index:
        print("html: %s" % html_index)
    if threshold_error:
        raise threshold_error
    if low:
        raise ZfuzzError("below %g%% of lines: %s" % (min_lines, ", ".join(
            "%s (%.1f%%)" % (f, p) for f, p in low)))
    return 0

