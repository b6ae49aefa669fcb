#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""Regenerates the seed corpora of the fuzz targets.

  corpus/generate.py [TARGET...] [--no-merge] [--jobs N]

For each target, its seed programs (fuzz/api/seeds.cc for the API targets; each other target's
own generator, see GENERATORS) are turned into inputs by the target's own decoder, written to a
temporary directory under their SHA-1 names, then merged into corpus/<target>/ with libFuzzer's
-merge=1 (only inputs that add coverage are added). With --no-merge every seed is added.
Existing files are never deleted or overwritten: a corpus only grows here; `tools/zfuzz corpus
minimize` is the place to shrink one.
"""
import argparse
import hashlib
import os
import random
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fdp  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# target -> the Bazel binary that prints "<name> <hex>" seed lines for it, and its arguments.
GENERATORS = {
    "zbud_api_fuzz": ("//fuzz/api:generate_seeds", ["zbud_api_fuzz"]),
    "zsmalloc_api_fuzz": ("//fuzz/api:generate_seeds", ["zsmalloc_api_fuzz"]),
    "zpool_api_fuzz": ("//fuzz/api:generate_seeds", ["zpool_api_fuzz"]),
    # The kernel's own files (needs @linux_source): seeds.cc built with the upstream kinds.
    "upstream_api_fuzz": ("//fuzz/api:generate_upstream_seeds", ["upstream_api_fuzz"]),
    "upstream_diff_fuzz": ("//fuzz/api:generate_upstream_seeds", ["upstream_diff_fuzz"]),
    # These harnesses decode a few choices with FuzzedDataProvider directly; their seed programs
    # are written here with the FuzzedDataProvider encoder (corpus/fdp.py), in the order the
    # harness reads them (see each harness's LLVMFuzzerTestOneInput).
    "zpool_misuse_fuzz": "misuse",
    "zpool_concurrent_fuzz": "concurrent",
    "zpool_lifecycle_fuzz": "lifecycle",
    # The sample harness's language is a byte per operation: random inputs from a fixed seed,
    # minimised by -merge=1, cover it.
    "kernel_api_fuzz": None,
}


def bazel_bin(label, config=None):
    argv = ["bazel", "build"] + (["--config=" + config] if config else []) + [label]
    subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    argv = ["bazel", "info"] + (["--config=" + config] if config else []) + ["bazel-bin"]
    bin_dir = subprocess.run(argv, cwd=ROOT, check=True, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True).stdout.strip()
    package, _, name = label.lstrip("/").partition(":")
    path = os.path.join(bin_dir, package, name)
    if not os.path.exists(path):
        raise SystemExit(f"generate: {label} built, but {path} is missing")
    return path


def random_seeds(count, seed):
    rng = random.Random(seed)
    return [(f"random-{i}", bytes(rng.randrange(256) for _ in range(rng.randrange(16, 600))))
            for i in range(count)]


# ---- zpool_misuse_fuzz: kind (0 zbud, 1 zsmalloc, 2 zpool/zbud, 3 zpool/zsmalloc), then ops
# (0..MISUSE_LAST_OP, see Run::Step) with their arguments.
MISUSE_LAST_OP = 21


def misuse_seeds():
    seeds = []
    size_max = 3968  # the harness caps sizes at zbud's maximum
    last = MISUSE_LAST_OP

    def malloc(e, size, kernel=True):
        e.int(0, 0, last).int(size, 1, size_max).bool(kernel)

    for kind in range(4):
        # Every misuse once, on a pool with a few objects (object indexes chosen below the live
        # count at each point).
        use_after_destroy = [(6, [("c", call)]) for call in range(8)]  # each entry point
        under_spinlock = [(20, [("s", 0), ("n", 300)])] + [(20, [("s", w)]) for w in (1, 2, 3)]
        for op, args in use_after_destroy + under_spinlock + [(21, [])] + [
                         (5, []), (7, [("i", 0), ("i", 1)]), (8, [("i", 0)]),
                         (9, [("i", 1)]), (10, [("i", 0), ("n", 900), ("b", False)]),
                         (10, [("i", 1), ("n", 50), ("b", True)]), (11, [("i", 2)]),
                         (12, [("k", 0), ("i", 0)]), (12, [("k", 1), ("i", 0)]),
                         (12, [("k", 2), ("i", 0)]),
                         (13, [("f", 0)]), (14, [("w", 0), ("k", 0)]),
                         (14, [("w", 1), ("k", 1), ("i", 0)]), (14, [("w", 2), ("k", 2)]),
                         (14, [("w", 3), ("k", 1)]), (14, [("w", 0), ("k", 2)]), (15, [("i", 0), ("x", 3), ("b", True)]),
                         (16, [("i", 0), ("a", 0)]),  # object 0 has 700 bytes
                         (17, [("b", False)]), (17, [("b", True)]), (18, [("i", 0), ("i", 1)]),
                         (19, [])]:
            e = fdp.Encoder().int(kind, 0, 3)
            for size in (700, 1800, 100, 2900):
                malloc(e, size)
            live = 4
            if op == 13:  # an old freed handle needs a free first
                e.int(2, 0, last).int(0, 0, live - 1)
                live -= 1
            e.int(op, 0, last)
            for what, value in args:
                if what == "i":
                    e.int(value, 0, live - 1)
                elif what == "n":
                    e.int(value, 1, size_max)
                elif what == "b":
                    e.bool(value)
                elif what == "f":
                    e.int(value, 0, 0)
                elif what == "w":
                    e.int(value, 0, 3)
                elif what == "x":
                    e.int(value, 1, 64)
                elif what == "a":
                    e.int(value, 0, 699)
                elif what == "c":
                    e.int(value, 0, 7)
                elif what == "s":
                    e.int(value, 0, 3)
                elif what == "k":  # free, map or unmap
                    e.int(value, 0, 2)
            e.int(3, 0, last).int(0, 0, max(live - 1, 0))  # a legal map afterwards
            tag = "".join(str(v) for w, v in args if w in "csk")
            seeds.append((f"misuse-k{kind}-op{op}{'-' + tag if tag else ''}", e.data()))
    return seeds


# ---- zpool_concurrent_fuzz: the mode (0 free, 1 input, 2 pct, 3 scenario-input, 4 scenario-pct),
# then for the program modes: kind, threads, cpus, background rounds, PCT's depth, steps and seed
# (pct only), per thread a length and its stream, and the rest the scheduler's decisions; for the
# scenario modes: the catalogue index, then PCT's depth, steps and seed, or the decisions.
CONCURRENT_MODES = 4
CONCURRENT_OPS = 8
SCENARIOS = 53  # fuzz/explore/catalogue.cc; checked against the binary's --list by the tools


def concurrent_seeds():
    def stream(mallocs, sizes):
        e = fdp.Encoder()
        e.int(1, 0, CONCURRENT_OPS).int(12, 2, 24).int(sizes[0], 1, sizes_max)  # 12 of one size
        for i in range(mallocs):
            e.int(0, 0, CONCURRENT_OPS).int(sizes[i % len(sizes)], 1, sizes_max).bool(i % 2)
        e.int(4, 0, CONCURRENT_OPS)  # free every other
        e.int(7, 0, CONCURRENT_OPS)  # compact from this worker
        e.int(6, 0, CONCURRENT_OPS)  # yield: let compaction run
        e.int(5, 0, CONCURRENT_OPS)  # map every object RW
        live = (12 + mallocs) // 2  # after freeing the even indexes
        for i in range(mallocs):
            e.int(2, 0, CONCURRENT_OPS).int(i % live, 0, live - 1).int(i % 3, 0, 2).int(2, 0, 3)
            e.int(6, 0, CONCURRENT_OPS)
        e.int(3, 0, CONCURRENT_OPS).int(0, 0, live - 1)
        return e.data()

    def program(mode, kind, cpus, parts, background=12, decisions=b""):
        e = fdp.Encoder().int(mode, 0, CONCURRENT_MODES).int(kind, 0, 3).int(len(cpus), 2, 4)
        for cpu in cpus:
            e.int(cpu, 0, 3)
        e.int(background, 0, 16)
        if mode == 2:
            e.int(2, 1, 3).int(400, 16, 4096).int(0x5eed + kind * 7 + len(cpus), 0, 2**64 - 1)
        for data in parts:
            e.int(min(len(data), 96), 0, 96)
        for data in parts:
            e.bytes(data[:96])
        e.remaining(decisions)
        return e.data()

    seeds = []
    for kind, sizes_max in ((0, 4096), (1, 4096), (2, 3968), (3, 3968)):
        for mode in (0, 1, 2):
            for cpus in ((0, 1), (1, 1), (0, 1, 1), (2, 3, 0, 1)):
                parts = [stream(4 + t, [500 + 300 * t, 3000 - 700 * t, 120 + 40 * t])
                         for t in range(len(cpus))]
                decisions = bytes((i * 37 + 129) & 0xFF for i in range(64)) if mode == 1 else b""
                seeds.append((f"concurrent-k{kind}-m{mode}-{''.join(map(str, cpus))}",
                              program(mode, kind, cpus, parts, decisions=decisions)))
    # Compaction racing maps of the objects it moves: worker 0 fragments a class and compacts
    # it while worker 1, with objects of the same class, maps all of them RW again and again;
    # the scheduler switches at most points (decisions 0x80/0x81 pick a thread, 0x10 stays).
    def compaction_stream(count, compact, rounds):
        e = fdp.Encoder().int(1, 0, CONCURRENT_OPS).int(count, 2, 24).int(500, 1, 4096)
        e.int(4, 0, CONCURRENT_OPS)
        if compact:
            e.int(7, 0, CONCURRENT_OPS)
        for _ in range(rounds):
            e.int(5, 0, CONCURRENT_OPS)
        return e.data()

    rng = random.Random("compaction-races")
    for k in range(12):
        parts = [compaction_stream(16, True, 1), compaction_stream(12, False, 6)]
        decisions = bytes(rng.choice([0x80, 0x81, 0x10]) for _ in range(rng.randrange(200, 2000)))
        seeds.append((f"concurrent-compaction-race-{k}",
                      program(1, 0, (0, 1), parts, background=0, decisions=decisions)))
    # The registry: worker 0 registers and unregisters the user driver while worker 1 creates
    # zpools of its type.
    def registry_stream(ops):
        e = fdp.Encoder()
        for op in ops:
            e.int(8, 0, CONCURRENT_OPS).int(op, 0, 2)
        return e.data()

    for mode in (0, 1, 2):
        parts = [registry_stream([0, 2, 1, 0, 1]), registry_stream([2, 2, 2, 2])]
        decisions = bytes(rng.choice([0x80, 0x81, 0x10]) for _ in range(200)) if mode == 1 else b""
        seeds.append((f"concurrent-registry-m{mode}",
                      program(mode, 1, (0, 1), parts, background=0, decisions=decisions)))
    # Every scenario of the explorer's catalogue, once under each kind of schedule.
    for index in range(SCENARIOS):
        e = fdp.Encoder().int(3, 0, CONCURRENT_MODES).int(index, 0, SCENARIOS - 1)
        e.remaining(bytes(rng.choice([0x80, 0x81, 0x10]) for _ in range(64)))
        seeds.append((f"concurrent-scenario-{index}-input", e.data()))
        e = fdp.Encoder().int(4, 0, CONCURRENT_MODES).int(index, 0, SCENARIOS - 1)
        e.int(2, 1, 3).int(256, 8, 1024).int(index * 7919 + 1, 0, 2**64 - 1)
        seeds.append((f"concurrent-scenario-{index}-pct", e.data()))
    return seeds


# ---- zpool_lifecycle_fuzz: ops 0..11 with their arguments (see LLVMFuzzerTestOneInput).
def lifecycle_seeds():
    scripts = {
        "register-create-busy-unregister":
            [(0, [0]), (2, [2]), (1, [0]), (4, [0]), (1, [0]), (2, [2])],
        "module-going-away":
            [(0, [1]), (5, [1]), (2, [3]), (7, [3]), (6, [1]), (2, [3]), (5, [1]), (4, [0]),
             (5, [1]), (6, [1])],
        "builtin-and-unknown": [(2, [0]), (3, [1]), (2, [5]), (7, [0]), (7, [1]), (8, [0]),
                                (4, [1]), (4, [0])],
        "double-register-and-impostor": [(0, [2]), (0, [2]), (10, [False]), (1, [2])],
        "negative-refcount": [(0, [0]), (10, [True, 0]), (1, [0])],
        "threads": [(0, [1]), (9, [1, 8]), (9, [2, 4]), (2, [3]), (1, [1]), (4, [0])],
        "failed-creates": [(0, [0]), (0, [1])] + [(11, [c, n]) for c in (0, 1, 2, 3)
                                                   for n in (1, 2, 3, 5)]
                          + [(1, [0]), (1, [1])],
    }
    seeds = []
    for name, ops in scripts.items():
        e = fdp.Encoder()
        pools = 0
        for op, args in ops:
            e.int(op, 0, 11)
            if op in (0, 1, 5, 6):
                e.int(args[0], 0, 2)
            elif op in (2, 3):
                e.int(args[0], 0, 5)
                pools += 1  # an upper bound: the index below stays in range if creates succeed
            elif op == 4:
                e.int(args[0], 0, max(pools - 1, 0))
                pools -= 1
            elif op == 7:
                e.int(args[0], 0, 4)
            elif op == 8:
                e.int(args[0], 0, max(pools - 1, 0)).int(2, 1, 4)
                for size in (100, 2000):
                    e.int(size, 1, 3000)
            elif op == 9:
                e.int(args[0], 0, 2).int(args[1], 1, 8)
            elif op == 11:
                e.int(args[0], 0, 4).int(args[1], 1, 8)
            elif op == 10:
                e.bool(args[0])
                if args[0]:
                    e.int(args[1], 0, 2)
        seeds.append((name, e.data()))
    return seeds


PY_GENERATORS = {"misuse": misuse_seeds, "concurrent": concurrent_seeds,
                 "lifecycle": lifecycle_seeds}


def seeds_of(target):
    if GENERATORS[target] is None:
        return random_seeds(64, target)
    if isinstance(GENERATORS[target], str):
        return PY_GENERATORS[GENERATORS[target]]()
    label, args = GENERATORS[target]
    binary = bazel_bin(label)
    out = subprocess.run([binary] + args, cwd=ROOT, check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    seeds = []
    for line in out.splitlines():
        name, _, hexdata = line.partition(" ")
        if not hexdata:
            raise SystemExit(f"generate: bad generator line for {target}: {line!r}")
        seeds.append((name, bytes.fromhex(hexdata)))
    return seeds


def write_new(directory, data):
    """Writes data under its SHA-1 name unless that file exists. Returns the name or None."""
    name = hashlib.sha1(data).hexdigest()
    path = os.path.join(directory, name)
    if os.path.exists(path):
        return None
    with open(path, "wb") as f:
        f.write(data)
    return name


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help="targets (default: all with a generator)")
    parser.add_argument("--no-merge", action="store_true",
                        help="add every seed instead of merging by coverage")
    args = parser.parse_args()
    targets = args.targets or sorted(GENERATORS)
    for t in targets:
        if t not in GENERATORS:
            print(f"generate: unknown target {t!r} (known: {', '.join(sorted(GENERATORS))})",
                  file=sys.stderr)
            return 2
    for target in targets:
        seeds = seeds_of(target)
        corpus = os.path.join(ROOT, "corpus", target)
        os.makedirs(corpus, exist_ok=True)
        if args.no_merge:
            added = [n for n in (write_new(corpus, d) for _, d in seeds) if n]
            print(f"{target}: {len(seeds)} seeds, {len(added)} new files")
            continue
        tmp = tempfile.mkdtemp(prefix=f"zfuzz-seeds-{target}-")
        try:
            for _, data in seeds:
                write_new(tmp, data)
            fuzzer = bazel_bin(f"//fuzz:{target}_libfuzzer", config="libfuzzer")
            before = set(os.listdir(corpus))
            subprocess.run([fuzzer, "-merge=1", corpus, tmp], cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            after = set(os.listdir(corpus))
            print(f"{target}: {len(seeds)} seeds, {len(after - before)} added by -merge=1 "
                  f"({len(after)} in the corpus)")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
