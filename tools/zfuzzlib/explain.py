# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz explain FILE --target T`: the operations an input decodes to, as call lines.

The target's own replay binary runs the input with ZFUZZ_EXPLAIN=1: the decoder that prints is the
decoder that fuzzes (fuzz/api), so the two can never disagree. The build has no sanitizer (fast);
`--sanitizer` picks one, e.g. to see a report beside the calls.
"""
import os

from . import repro, targets as targets_mod


def add_parser(sub):
    p = sub.add_parser(
        "explain", help="print the operations an input decodes to, as call lines",
        description="Runs FILE in the target's replay binary with call tracing and prints the "
        "operations as kernel-style call lines (h3 = zs_malloc(pool, 1200, GFP_KERNEL) ...), "
        "then how the run ended.")
    p.add_argument("file", metavar="FILE", help="any input of the target")
    p.add_argument("--target", help="the fuzz target (default: from a finding's metadata or "
                   "its path)")
    p.add_argument("--sanitizer", default=None,
                   help="build with this sanitizer (default: none, the fastest build)")
    p.add_argument("--out", default=repro.DEFAULT_OUT, help="where the binary goes "
                   "(default: out/fuzz)")
    p.set_defaults(func=run_explain)


def run_explain(args):
    repro.check_input(args.file)
    known = targets_mod.list_targets()
    target, _, bug, _ = repro.resolve(args.file, args.target, args.sanitizer, None,
                                      known, None)
    out = os.path.abspath(args.out)
    binary = repro.build_replay(target, args.sanitizer, bug, out)
    run = repro.run_input(binary, args.file)
    print("%s: %d bytes, target %s" % (args.file, os.path.getsize(args.file), target))
    for line in run.calls:
        print(line)
    if not run.calls:
        print("  (no operation: the input is too short to decode one)")
    if run.failed:
        print("-- the run failed: %s at %s (tools/zfuzz repro shows the report)"
              % (run.parsed["kind"], " <- ".join(run.parsed["frames"] or ["?"])))
        return 1
    print("-- the run ended cleanly (%d call lines)" % len(run.calls))
    return 0

