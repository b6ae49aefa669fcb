# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz corpus merge|minimize|stats`: care of the checked-in corpora.

  merge    adds to corpus/<t>/ the inputs of other directories that add coverage (libFuzzer's
           -merge=1; files named by SHA-1). Only ever adds.
  minimize writes the smallest subset of corpus/<t>/ with the same coverage into a NEW directory
           and reports the figures; it never deletes from corpus/ (adopt the result with git, where
           the change is reviewed).
  stats    per target: inputs, bytes, sizes, regressions, and what needs care (inputs over the
           target's max_len, duplicates, names that are not the SHA-1 of the content).
"""
import argparse
import hashlib
import os
import re
import subprocess

from . import targets as targets_mod
from .common import REPO_ROOT, ZfuzzError, say, warn

DEFAULT_OUT = os.path.join(REPO_ROOT, "out", "fuzz")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


def add_parser(sub):
    p = sub.add_parser("corpus", help="merge, minimise and inspect the checked-in corpora",
                       description=__doc__.split("\n", 2)[2] if __doc__ else None)
    csub = p.add_subparsers(dest="corpus_command", metavar="ACTION")
    csub.required = True

    m = csub.add_parser("merge", help="add inputs that add coverage from other directories",
                        description="Adds to corpus/<target>/ every input of the given "
                        "directories that adds coverage (libFuzzer -merge=1). Never removes.")
    m.add_argument("target", metavar="TARGET")
    m.add_argument("dirs", nargs="+", metavar="DIR", help="directories of candidate inputs")
    _common(m)
    m.set_defaults(func=run_merge)

    z = csub.add_parser("minimize", help="the smallest subset with the same coverage, into a "
                        "new directory",
                        description="Writes the smallest subset of corpus/<target>/ with the same "
                        "coverage into --into (a new or empty directory) and prints the figures. "
                        "Nothing in corpus/ is deleted: replace it with git if you adopt it.")
    z.add_argument("target", metavar="TARGET")
    z.add_argument("--into", required=True, metavar="DIR",
                   help="a new or empty directory outside corpus/")
    _common(z)
    z.set_defaults(func=run_minimize)

    s = csub.add_parser("stats", help="inputs, sizes and what needs care, per target")
    s.add_argument("targets", nargs="*", metavar="TARGET",
                   help="targets (default: every target)")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.add_argument("--corpus-root", default=os.path.join(REPO_ROOT, "corpus"),
                   help=argparse.SUPPRESS)
    s.set_defaults(func=run_stats)


def _common(p):
    p.add_argument("--sanitizer", default="asan",
                   help="the libFuzzer build that measures coverage (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, help="where the binary goes (default: out/fuzz)")
    p.add_argument("--corpus-root", default=os.path.join(REPO_ROOT, "corpus"), help=argparse.SUPPRESS)


def _binary(target, sanitizer, out):
    bindir = os.path.join(out, "bin", targets_mod.variant_name("libfuzzer", sanitizer))
    os.makedirs(out, exist_ok=True)
    return targets_mod.build([target], "libfuzzer", sanitizer, bindir,
                             os.path.join(out, "build.log"))[target]


def _libfuzzer_merge(binary, dest, sources, max_len, log):
    argv = [binary, "-merge=1", "-timeout=25"]
    if max_len:
        argv.append("-max_len=%d" % max_len)
    argv += [dest] + sources
    with open(log, "wb") as f:
        proc = subprocess.run(argv, stdout=f, stderr=subprocess.STDOUT, cwd=os.path.dirname(log),
                              env=targets_mod.fuzz_env())
    return proc.returncode


def _merge_figures(log):
    """libFuzzer's 'MERGE-OUTER: N new files with X new features added; Y new coverage edges'."""
    try:
        with open(log, errors="replace") as f:
            for line in f:
                if line.startswith("MERGE-OUTER:") and "new files" in line:
                    return line.split("MERGE-OUTER:", 1)[1].strip()
    except OSError:
        pass
    return None


def run_merge(args):
    known = targets_mod.list_targets()
    [target] = targets_mod.check_targets([args.target], known)
    corpus_dir = os.path.join(os.path.abspath(args.corpus_root), target)
    corpus_real = os.path.realpath(corpus_dir)
    for d in args.dirs:
        if not os.path.isdir(d):
            raise ZfuzzError("%s: not a directory" % d, exit_code=2)
        if os.path.realpath(d) == corpus_real:
            raise ZfuzzError("%s is the corpus itself" % d, exit_code=2)
    out = os.path.abspath(args.out)
    binary = _binary(target, args.sanitizer, out)
    os.makedirs(corpus_dir, exist_ok=True)
    before = set(os.listdir(corpus_dir))
    log = os.path.join(out, "merge-%s.log" % target)
    code = _libfuzzer_merge(binary, corpus_dir, [os.path.abspath(d) for d in args.dirs],
                            known[target]["max_len"], log)
    after = set(os.listdir(corpus_dir))
    if before - after:
        raise ZfuzzError("merge lost inputs of %s (see %s)" % (corpus_dir, log))
    if code != 0:
        raise ZfuzzError("libFuzzer's merge exited %d after adding %d input(s) (log: %s)"
                         % (code, len(after - before), log))
    figures = _merge_figures(log)
    say("%s: %d -> %d inputs (%d added)%s" % (target, len(before), len(after),
                                             len(after - before),
                                             "; " + figures if figures else ""))
    return 0


def run_minimize(args):
    known = targets_mod.list_targets()
    [target] = targets_mod.check_targets([args.target], known)
    corpus_dir = os.path.join(os.path.abspath(args.corpus_root), target)
    into = os.path.abspath(args.into)
    corpus_root = os.path.realpath(os.path.abspath(args.corpus_root))
    if os.path.realpath(into).startswith(corpus_root + os.sep) or \
            os.path.realpath(into) == corpus_root:
        raise ZfuzzError("--into must be outside corpus/ (minimize never writes there)",
                         exit_code=2)
    if os.path.exists(into) and (not os.path.isdir(into) or os.listdir(into)):
        raise ZfuzzError("--into %s exists and is not an empty directory" % args.into,
                         exit_code=2)
    if not os.path.isdir(corpus_dir) or not os.listdir(corpus_dir):
        raise ZfuzzError("%s is empty: nothing to minimise" % corpus_dir, exit_code=2)
    out = os.path.abspath(args.out)
    binary = _binary(target, args.sanitizer, out)
    os.makedirs(into, exist_ok=True)
    log = os.path.join(out, "minimize-%s.log" % target)
    code = _libfuzzer_merge(binary, into, [corpus_dir], known[target]["max_len"], log)
    if code != 0:
        raise ZfuzzError("libFuzzer's merge exited %d (log: %s)" % (code, log))
    total = stats_of(corpus_dir)
    kept = stats_of(into)
    say("%s: %d inputs (%d bytes) -> %d inputs (%d bytes) with the same coverage, in %s"
        % (target, total["inputs"], total["bytes"], kept["inputs"], kept["bytes"], into))
    figures = _merge_figures(log)
    if figures:
        say("libFuzzer: " + figures)
    say("nothing in corpus/ was changed; to adopt: git rm the old files and copy these in")
    return 0


def stats_of(directory, max_len=None):
    sizes, names_bad, by_digest = [], 0, {}
    for name in sorted(os.listdir(directory)) if os.path.isdir(directory) else []:
        path = os.path.join(directory, name)
        if name.startswith(".") or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        sizes.append(len(data))
        digest = hashlib.sha1(data).hexdigest()
        by_digest.setdefault(digest, []).append(name)
        if not (_SHA1_RE.match(name) and name == digest):
            names_bad += 1
    sizes.sort()
    return {
        "inputs": len(sizes), "bytes": sum(sizes),
        "min": sizes[0] if sizes else 0, "median": sizes[len(sizes) // 2] if sizes else 0,
        "max": sizes[-1] if sizes else 0,
        "over_max_len": sum(1 for s in sizes if max_len and s > max_len),
        "duplicates": sum(len(v) - 1 for v in by_digest.values()),
        "not_sha1_named": names_bad,
    }


def run_stats(args):
    known = targets_mod.list_targets()
    names = targets_mod.check_targets(args.targets, known)
    root = os.path.abspath(args.corpus_root)
    rows = []
    for t in names:
        s = stats_of(os.path.join(root, t), known[t]["max_len"])
        regressions = stats_of(os.path.join(root, "regressions", t))
        s.update({"target": t, "regressions": regressions["inputs"],
                  "dict": os.path.exists(os.path.join(root, t + ".dict")),
                  "max_len": known[t]["max_len"]})
        rows.append(s)
    if args.json:
        import json
        print(json.dumps(rows, indent=2))
    else:
        fmt = "%-22s %7s %8s %6s %7s %6s %8s %6s  %s"
        print(fmt % ("target", "inputs", "bytes", "min", "median", "max", "max_len", "regr",
                     "care"))
        for r in rows:
            care = []
            if r["over_max_len"]:
                care.append("%d over max_len" % r["over_max_len"])
            if r["duplicates"]:
                care.append("%d duplicates" % r["duplicates"])
            if r["not_sha1_named"]:
                care.append("%d not named by SHA-1" % r["not_sha1_named"])
            if not r["dict"]:
                care.append("no dictionary")
            if r["inputs"] == 0:
                care.append("EMPTY")
            print(fmt % (r["target"], r["inputs"], r["bytes"], r["min"], r["median"], r["max"],
                         r["max_len"] or "-", r["regressions"], ", ".join(care) or "ok"))
    empty = [r["target"] for r in rows if r["inputs"] == 0]
    if empty:
        warn("empty corpus: %s" % ", ".join(empty))
        return 1
    return 0
