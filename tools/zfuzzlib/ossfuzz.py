# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz oss-fuzz`: build the OSS-Fuzz / ClusterFuzzLite package locally and check it.

Runs tools/oss_fuzz/build.sh (what .clusterfuzzlite/build.sh runs in OSS-Fuzz's base-builder)
with OSS-Fuzz's variables set by hand: CC=clang-19, CXX=clang++-19, CFLAGS/CXXFLAGS as the
base-builder image sets them for the sanitizer, LIB_FUZZING_ENGINE=-fsanitize=fuzzer, SRC (a
temporary directory whose zfuzz/ is this repository), WORK (temporary) and OUT=--out. Then checks
the package: every target's binary, <t>_seed_corpus.zip, <t>.dict and <t>.options is present,
the options are what zfuzz_target's genrule writes, and each binary runs its unzipped seed corpus
with the options' flags (`<bin> -runs=0 -max_len=N -dict=<t>.dict <seeds>`), as OSS-Fuzz's
check_build would. Prints a table; exits 1 if anything is missing or a run fails.

Two local differences from OSS-Fuzz, both on the link line only: Debian's libFuzzer is built
against libstdc++ (OSS-Fuzz's carries a private libc++), so LIB_FUZZING_ENGINE adds
-l:libstdc++.so.6 beside our -stdlib=libc++ code; and MemorySanitizer links the MSan-instrumented
libc++ that `tools/zfuzz setup` builds (OSS-Fuzz's image has its own).
"""
import configparser
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

from . import setup
from .common import (REPO_ROOT, Stopwatch, ZfuzzError, format_duration, last_line, say, tail_of,
                     which)
from . import targets as targets_mod
from .targets import parse_fuzz_build

BUILD_SH = os.path.join(REPO_ROOT, "tools", "oss_fuzz", "build.sh")
SANITIZERS = ("address", "undefined", "memory")
ENGINES = ("libfuzzer",)
DEFAULT_OUT = os.path.join(REPO_ROOT, "out", "oss-fuzz")
MARKER = ".zfuzz-oss-fuzz"
LIBCXX_HEADERS = "/usr/lib/llvm-19/include/c++/v1"
SYMBOLIZER = "/usr/lib/llvm-19/bin/llvm-symbolizer"
RUN_TIMEOUT = 600

# OSS-Fuzz's base-builder image (infra/base-images/base-builder/Dockerfile): CFLAGS, the
# sanitizers' flags, the libFuzzer coverage flags, and the C++ flags' -stdlib=libc++.
BASE_CFLAGS = ("-O1 -fno-omit-frame-pointer -gline-tables-only "
               "-DFUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION")
_UBSAN_CHECKS = ("array-bounds,bool,builtin,enum,float-divide-by-zero,function,"
                 "integer-divide-by-zero,null,object-size,return,returns-nonnull-attribute,shift,"
                 "signed-integer-overflow,unreachable,vla-bound,vptr")
SANITIZER_FLAGS = {
    "address": "-fsanitize=address -fsanitize-address-use-after-scope",
    # unsigned-integer-overflow is a coverage signal only (recoverable, silenced at run time).
    "undefined": "-fsanitize=%s,unsigned-integer-overflow -fno-sanitize-recover=%s"
                 % (_UBSAN_CHECKS, _UBSAN_CHECKS),
    "memory": "-fsanitize=memory -fsanitize-memory-track-origins",
}
COVERAGE_FLAGS = "-fsanitize=fuzzer-no-link"
CXXFLAGS_EXTRA = "-stdlib=libc++"
ENGINE_FLAGS = {"libfuzzer": "-fsanitize=fuzzer"}
# Debian's libclang_rt.fuzzer is built against libstdc++ (see the module comment). A bare
# -lstdc++ would be rewritten to -lc++ by clang++ -stdlib=libc++, hence the file name.
DEBIAN_LIBFUZZER_RUNTIME = "-l:libstdc++.so.6"
RUN_ENV = {
    "address": {},
    "undefined": {"UBSAN_OPTIONS": "silence_unsigned_overflow=1:print_stacktrace=1"},
    "memory": {},
}


def add_parser(sub):
    p = sub.add_parser(
        "oss-fuzz",
        help="build and check the OSS-Fuzz / ClusterFuzzLite package (tools/oss_fuzz/build.sh)",
        description="Runs tools/oss_fuzz/build.sh as OSS-Fuzz's base-builder would (CC, CXX, "
        "CFLAGS, CXXFLAGS, LIB_FUZZING_ENGINE, SRC, WORK, OUT set by hand for clang-19), then "
        "checks that every target's binary, seed corpus zip, dictionary and options are in "
        "--out and that each binary runs its seed corpus (-runs=0). Prints a table; exits 1 on "
        "a missing file or a failed run.")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="build only these fuzz targets (default: all of fuzz/BUILD)")
    p.add_argument("--out", default=None,
                   help="OSS-Fuzz's $OUT (default: %s/<sanitizer>); emptied first if an "
                   "earlier oss-fuzz run made it, refused if it holds anything else"
                   % DEFAULT_OUT)
    p.add_argument("--sanitizer", choices=SANITIZERS, default="address",
                   help="OSS-Fuzz's $SANITIZER (default: %(default)s)")
    p.add_argument("--engine", choices=ENGINES, default="libfuzzer",
                   help="OSS-Fuzz's $FUZZING_ENGINE (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel compilations (default: the number of CPUs)")
    p.set_defaults(func=run_oss_fuzz)



# ---- pure parts (unit-tested) ------------------------------------------------------------------

def build_env(sanitizer, engine, src, work, out, libcxx_lib=None):
    """OSS-Fuzz's build variables for one sanitizer and engine (as a dict to add to os.environ).
    `libcxx_lib`: the MSan libc++ directory, required for memory."""
    if sanitizer not in SANITIZER_FLAGS:
        raise ZfuzzError("unknown sanitizer %r (known: %s)" % (sanitizer, ", ".join(SANITIZERS)),
                         exit_code=2)
    if engine not in ENGINE_FLAGS:
        raise ZfuzzError("unknown engine %r (known: %s)" % (engine, ", ".join(ENGINES)),
                         exit_code=2)
    cflags = " ".join([BASE_CFLAGS, SANITIZER_FLAGS[sanitizer], COVERAGE_FLAGS])
    engine_flags = [ENGINE_FLAGS[engine]]
    if sanitizer == "memory":
        if not libcxx_lib:
            raise ZfuzzError("--sanitizer memory needs the MSan libc++ (tools/zfuzz setup)")
        engine_flags += ["-L" + libcxx_lib, "-Wl,-rpath," + libcxx_lib, "-lc++abi"]
    engine_flags.append(DEBIAN_LIBFUZZER_RUNTIME)
    return {
        "CC": "clang-19",
        "CXX": "clang++-19",
        "CFLAGS": cflags,
        "CXXFLAGS": cflags + " " + CXXFLAGS_EXTRA,
        "LIB_FUZZING_ENGINE": " ".join(engine_flags),
        "SANITIZER": sanitizer,
        "FUZZING_ENGINE": engine,
        "ARCHITECTURE": "x86_64",
        "SRC": src,
        "WORK": work,
        "OUT": out,
    }


def expected_options(target):
    """The .options text zfuzz_target's genrule writes for a parsed fuzz/BUILD target."""
    lines = ["[libfuzzer]"] + ["%s = %s" % (k, target["options"][k])
                              for k in sorted(target["options"])]
    if target.get("dict"):
        lines.append("dict = %s.dict" % target["name"])
    return "\n".join(lines) + "\n"


def expected_files(name):
    return [name, name + "_seed_corpus.zip", name + ".dict", name + ".options"]


def missing_files(out, name):
    """The package files of `name` that are absent from `out` (the binary must be executable)."""
    missing = []
    for f in expected_files(name):
        path = os.path.join(out, f)
        if not os.path.isfile(path) or (f == name and not os.access(path, os.X_OK)):
            missing.append(f)
    return missing


def options_flags(text):
    """The .options file's [libfuzzer] section as command-line flags (-key=value)."""
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text)
    except configparser.Error as e:
        raise ZfuzzError("bad .options file: %s" % str(e).splitlines()[0])
    if not parser.has_section("libfuzzer"):
        raise ZfuzzError("bad .options file: no [libfuzzer] section")
    return ["-%s=%s" % (k, v) for k, v in parser.items("libfuzzer")]


def parse_libfuzzer_output(text):
    """(inputs executed, done) from libFuzzer's output: `Done N runs` at the end."""
    runs, done = 0, False
    for line in text.splitlines():
        if line.startswith("Done ") and " runs" in line:
            try:
                runs = int(line.split()[1])
                done = True
            except (IndexError, ValueError):
                pass
    return runs, done


def select_targets(requested, known):
    return targets_mod.check_targets(requested, known)


def prepare_out(path):
    """--out, created or emptied: only a directory an earlier run marked (or an empty one) is
    emptied, never anything else; never inside the repository's sources."""
    real = os.path.realpath(path)
    root = os.path.realpath(REPO_ROOT)
    if real == root or any(real == os.path.join(root, d) or real.startswith(
            os.path.join(root, d) + os.sep) for d in ("corpus", "zpool", "fuzz", "tools")):
        raise ZfuzzError("--out %s: inside the repository's sources; use out/ or /tmp" % path,
                         exit_code=2)
    if os.path.isdir(real) and os.listdir(real):
        if not os.path.exists(os.path.join(real, MARKER)):
            raise ZfuzzError("--out %s: not empty and not made by `tools/zfuzz oss-fuzz`" % path,
                             exit_code=2)
        shutil.rmtree(real)
    try:
        os.makedirs(real, exist_ok=True)
        with open(os.path.join(real, MARKER), "w") as f:
            f.write("made by tools/zfuzz oss-fuzz; emptied by its next run\n")
    except OSError as e:
        raise ZfuzzError("--out %s: cannot write there (%s)" % (path, e.strerror or e))
    return real


# ---- the run -----------------------------------------------------------------------------------

class Row:
    def __init__(self, name):
        self.name = name
        self.missing = []
        self.seeds = 0
        self.runs = 0
        self.result = "not run"
        self.ok = False
        self.seconds = 0.0
        self.size = 0


def check_target(out, target, sanitizer, log):
    row = Row(target["name"])
    watch = Stopwatch()
    name = target["name"]
    row.missing = missing_files(out, name)
    if row.missing:
        row.result = "missing " + ", ".join(row.missing)
        return row
    row.size = os.path.getsize(os.path.join(out, name))
    with open(os.path.join(out, name + ".options")) as f:
        options = f.read()
    if options != expected_options(target):
        row.result = "options differ from zfuzz_target's"
        return row
    flags = options_flags(options)
    scratch = tempfile.mkdtemp(prefix="zfuzz-oss-fuzz-seeds-")
    try:
        with zipfile.ZipFile(os.path.join(out, name + "_seed_corpus.zip")) as zf:
            zf.extractall(scratch)
            row.seeds = len(zf.namelist())
        if row.seeds == 0:
            row.result = "empty seed corpus"
            return row
        env = dict(os.environ, **RUN_ENV[sanitizer])
        env.setdefault("LLVM_SYMBOLIZER_PATH", SYMBOLIZER)
        argv = [os.path.join(out, name), "-runs=0"] + flags + [scratch]
        with open(log, "ab") as f:
            f.write(("$ %s\n" % " ".join(argv)).encode())
            f.flush()
            try:
                # From OUT, as ClusterFuzz runs it: the options' dict is relative.
                proc = subprocess.run(argv, cwd=out, env=env, stdout=f, stderr=subprocess.STDOUT,
                                      timeout=RUN_TIMEOUT)
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = None
        row.runs, done = parse_libfuzzer_output(tail_of(log, 30))
        if code is None:
            row.result = "timed out after %d s" % RUN_TIMEOUT
        elif code != 0 or not done:
            row.result = "exit %d: %s" % (code, last_line(tail_of(log, 3)))
        else:
            row.ok = True
            row.result = "ok"
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        row.seconds = watch.seconds()
    return row


def format_table(rows):
    headers = ("target", "files", "size", "seeds", "runs", "time", "result")
    body = []
    for r in rows:
        body.append((r.name, "%d/4" % (4 - len(r.missing)),
                     "%.1f MB" % (r.size / 1e6) if r.size else "-", str(r.seeds), str(r.runs),
                     format_duration(r.seconds), r.result))
    widths = [max(len(x[i]) for x in [headers] + body) for i in range(len(headers))]
    lines = []
    for cells in [headers, tuple("-" * w for w in widths)] + body:
        lines.append("  ".join(c.ljust(widths[i]) if i in (0, 6) else c.rjust(widths[i])
                               for i, c in enumerate(cells)).rstrip())
    return "\n".join(lines)


def run_oss_fuzz(args):
    watch = Stopwatch()
    with open(os.path.join(REPO_ROOT, "fuzz", "BUILD")) as f:
        known = {t["name"]: t for t in parse_fuzz_build(f.read())}
    names = select_targets(args.targets, list(known))
    if args.jobs is not None and args.jobs < 1:
        raise ZfuzzError("--jobs: must be at least 1", exit_code=2)
    for tool in ("clang-19", "clang++-19", "ar", "bash"):
        if which(tool) is None:
            raise ZfuzzError("%s not found (tools/zfuzz setup installs it)" % tool)
    if not os.path.isdir(LIBCXX_HEADERS):
        raise ZfuzzError("libc++ headers missing (%s): OSS-Fuzz builds C++ with -stdlib=libc++; "
                         "tools/zfuzz setup installs libc++-19-dev" % LIBCXX_HEADERS)
    libcxx_lib = None
    if args.sanitizer == "memory":
        if not setup.libcxx_complete():
            raise ZfuzzError("--sanitizer memory needs the MSan-instrumented libc++: run "
                             "tools/zfuzz setup")
        libcxx_lib = os.path.join(setup.libcxx_prefix(), "install", "lib")
    out = prepare_out(args.out or os.path.join(DEFAULT_OUT, args.sanitizer))
    log = out.rstrip("/") + "-build.log"
    if os.path.exists(log):
        os.unlink(log)

    scratch = tempfile.mkdtemp(prefix="zfuzz-oss-fuzz-")
    try:
        src = os.path.join(scratch, "src")
        work = os.path.join(scratch, "work")
        os.makedirs(src)
        os.makedirs(work)
        os.symlink(REPO_ROOT, os.path.join(src, "zfuzz"))
        variables = build_env(args.sanitizer, args.engine, src, work, out, libcxx_lib)
        env = dict(os.environ, **variables)
        env.pop("ZFUZZ_ROOT", None)
        if args.targets:
            env["ZFUZZ_TARGETS"] = " ".join(names)
        if args.jobs:
            env["ZFUZZ_JOBS"] = str(args.jobs)
        say("build.sh for %s/%s, %d target(s), OUT=%s (log: %s)"
            % (args.sanitizer, args.engine, len(names), out, log))
        build_watch = Stopwatch()
        with open(log, "wb") as f:
            for key in sorted(variables):
                f.write(("%s=%s\n" % (key, variables[key])).encode())
            f.write(("$ bash %s\n" % BUILD_SH).encode())
            f.flush()
            proc = subprocess.run(["bash", BUILD_SH], cwd=os.path.join(src, "zfuzz"), env=env,
                                  stdout=f, stderr=subprocess.STDOUT)
        if proc.returncode != 0:
            for line in tail_of(log, 15).splitlines():
                print("  | " + line, file=sys.stderr)
            raise ZfuzzError("tools/oss_fuzz/build.sh failed with exit code %d (log: %s)"
                             % (proc.returncode, log))
        say("build.sh done in %s" % format_duration(build_watch.seconds()))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    run_log = out.rstrip("/") + "-runs.log"
    if os.path.exists(run_log):
        os.unlink(run_log)
    rows = [check_target(out, known[n], args.sanitizer, run_log) for n in names]
    print()
    print(format_table(rows))
    failed = [r for r in rows if not r.ok]
    print()
    print("OUT: %s; build log: %s; run log: %s" % (out, log, run_log))
    print("%d target(s) ok, %d failed, %s" % (len(rows) - len(failed), len(failed),
                                              format_duration(watch.seconds())))
    if failed:
        raise ZfuzzError("oss-fuzz package check failed for %s" % ", ".join(r.name
                                                                           for r in failed))
    return 0

