# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz fuzz`: a fuzzing campaign over the targets, with libFuzzer or AFL++.

  tools/zfuzz fuzz [TARGET...] [--engine libfuzzer|afl] [--sanitizer asan|ubsan|msan|tsan]
                   [--time 60s] [--jobs N] [--out DIR]

The campaign builds the binaries it needs, then runs the targets in rotation, `--jobs` processes
at a time; a target gets `--time` of wall clock. With fewer targets than jobs, a target gets
several processes on one corpus (libFuzzer processes sharing the corpus directory, AFL++ one -M
and -S instances). Each target's working state stays under --out (default out/fuzz):

  <out>/targets/<t>/corpus/      libFuzzer's growing corpus (a second run resumes from it)
  <out>/targets/<t>/afl/         AFL++'s sync directory (resumed with AFL_AUTORESUME)
  <out>/targets/<t>/artifacts/   raw crash, leak, timeout and oom inputs
  <out>/targets/<t>/logs/        every process's output
  <out>/findings/<state>/        one reproducer per crash state, with its report and metadata
  <out>/summary.json             the last campaign's figures (also printed as a table)

On the way out (budget spent or Ctrl-C) new inputs are merged into corpus/<t>/ with libFuzzer's
-merge=1, which only adds files (named by SHA-1) to the first directory: the checked-in corpus
never loses an input. Findings are re-run, symbolized, and deduplicated by crash state.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

from . import findings, targets as targets_mod
from .common import (REPO_ROOT, Stopwatch, ZfuzzError, format_duration, parse_duration, say,
                     tail_of, warn)

DEFAULT_TIME = "60s"
DEFAULT_OUT = os.path.join(REPO_ROOT, "out", "fuzz")
ARTIFACT_PREFIXES = ("crash-", "leak-", "timeout-", "oom-", "slow-unit-")
# A target that crashes at start-up this many times in a row stops for the rest of its budget
# (typically: a bug its seed corpus already triggers; one finding is enough).
MAX_QUICK_CRASHES = 3
QUICK_SECONDS = 5
INPUT_TIMEOUT = 25  # seconds per input; the slowest legal input runs well under 1 s


def add_parser(sub):
    p = sub.add_parser(
        "fuzz",
        help="run a fuzzing campaign (the README's main command)",
        description="A fuzzing campaign: builds the targets for the engine and sanitizer, runs "
        "them in rotation (--jobs processes at a time, --time each), shows a status line per "
        "running target, then merges new inputs into corpus/<target>/ (only ever adding), keeps "
        "one reproducer per crash state under OUT/findings and prints a summary (also "
        "OUT/summary.json). A second run resumes from OUT. Ctrl-C ends the campaign early and "
        "still merges and summarises.")
    p.add_argument("targets", nargs="*", metavar="TARGET",
                   help="fuzz targets to run (default: every target in fuzz/BUILD)")
    p.add_argument("--engine", default="libfuzzer", choices=["libfuzzer", "afl"],
                   help="fuzzing engine (default: %(default)s)")
    p.add_argument("--sanitizer", default="asan",
                   help="asan, ubsan, msan or tsan (AFL++: asan or ubsan; default: %(default)s)")
    p.add_argument("--time", default=DEFAULT_TIME,
                   help="wall-clock budget per target, e.g. 90s, 10m, 2h (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=None,
                   help="fuzzing processes at a time (default: the number of cores, %d here)"
                   % (os.cpu_count() or 1))
    p.add_argument("--out", default=DEFAULT_OUT,
                   help="campaign state, findings and summary (default: out/fuzz)")
    p.add_argument("--no-merge", action="store_true",
                   help="leave corpus/<target>/ alone (new inputs stay under OUT)")
    p.add_argument("--status-interval", type=float, default=None,
                   help="seconds between status lines (default: 1 on a terminal, 30 otherwise)")
    p.add_argument("--no-tsan", action="store_true",
                   help="do not add the free-running TSan run of %s to a libFuzzer campaign of "
                   "another sanitizer" % "zpool_concurrent_fuzz")
    p.add_argument("--from-empty", action="store_true",
                   help="start from an empty corpus: no checked-in seeds (corpus/ and "
                   "regressions/), and OUT must hold no corpus of the targets yet; for measuring "
                   "what the search finds on its own")
    p.add_argument("--inject-bug", default=None, metavar="NAME",
                   help="test-only: build with one injected bug (%s); implies --no-merge"
                   % ", ".join(targets_mod.INJECTED_BUGS))
    p.set_defaults(func=run_fuzz)


# ---- one running fuzzer process ------------------------------------------------------------------

class Instance:
    """One fuzzer process of a target, restarted after crashes until the budget is spent."""

    def __init__(self, campaign, target, index):
        self.c = campaign
        self.target = target
        self.index = index
        self.proc = None
        self.log_path = None
        self.log_pos = 0
        self.started = 0.0
        self.deadline = 0.0
        self.runs = 0
        self.quick_crashes = 0
        self.stopped_reason = None
        self.execs_base = 0
        self.stats = {"execs": 0, "exec_s": 0, "cov": 0, "ft": 0, "corpus": 0}

    @property
    def tdir(self):
        return self.c.target_dir(self.target)

    def start(self, deadline):
        self.deadline = deadline
        if self.c.engine == "afl":
            # A resumed AFL++ instance continues its counters: count this campaign's only.
            before = parse_afl_plot(self._afl_plot_path()) or {}
            self.execs_base = before.get("execs", 0)
        self._spawn()

    def _afl_plot_path(self):
        inst = "main" if self.index == 0 else "sec%d" % self.index
        return os.path.join(self.tdir, "afl", inst, "plot_data")

    def _spawn(self):
        remaining = int(self.deadline - time.monotonic())
        logs = os.path.join(self.tdir, "logs")
        os.makedirs(logs, exist_ok=True)
        self.runs += 1
        self.log_path = os.path.join(logs, "%s-%s-%d-%d.log" % (
            self.c.engine, self.c.stamp, self.index, self.runs))
        self.log_pos = 0
        argv, env = (self._libfuzzer_argv(remaining) if self.c.engine == "libfuzzer"
                     else self._afl_argv(remaining))
        with open(self.log_path, "wb") as log:
            log.write(("$ " + " ".join(argv) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(argv, cwd=self.tdir, stdout=log,
                                         stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self.started = time.monotonic()

    def _libfuzzer_argv(self, remaining):
        t = self.target
        base = unit_target(t)
        argv = [self.c.binaries[t], "-max_total_time=%d" % max(remaining, 1),
                "-print_final_stats=1", "-timeout=%d" % INPUT_TIMEOUT,
                "-artifact_prefix=" + os.path.join(self.tdir, "artifacts") + "/"]
        max_len = self.c.known[base]["max_len"]
        if max_len:
            argv.append("-max_len=%d" % max_len)
        dict_path = os.path.join(REPO_ROOT, "corpus", base + ".dict")
        if os.path.exists(dict_path):
            argv.append("-dict=" + dict_path)
        argv.append(os.path.join(self.tdir, "corpus"))
        for d in self.c.seed_dirs(t):
            argv.append(d)
        return argv, targets_mod.fuzz_env(unit_env(t))

    def _afl_argv(self, remaining):
        t = self.target
        role = ["-M", "main"] if self.index == 0 else ["-S", "sec%d" % self.index]
        # -t: the same per-input limit as libFuzzer's -timeout, so that a hang is one.
        argv = ["afl-fuzz", "-V", str(max(remaining, 1)), "-t", str(INPUT_TIMEOUT * 1000),
                "-i", self.c.afl_seed_dir(t), "-o", os.path.join(self.tdir, "afl")] + role
        max_len = self.c.known[unit_target(t)]["max_len"]
        if max_len:
            argv += ["-G", str(max_len)]
        dict_path = os.path.join(REPO_ROOT, "corpus", unit_target(t) + ".dict")
        if os.path.exists(dict_path):
            argv += ["-x", dict_path]
        argv += ["--", self.c.binaries[t]]
        env = targets_mod.fuzz_env({
            "AFL_NO_UI": "1", "AFL_SKIP_CPUFREQ": "1", "AFL_NO_AFFINITY": "1",
            "AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES": "1", "AFL_AUTORESUME": "1",
        })
        # AFL++ wants the sanitizer to abort (a signal it sees) rather than exit, and checks the
        # options of every sanitizer runtime it knows: set only ours, as it requires.
        for key in ("MSAN_OPTIONS", "TSAN_OPTIONS", "LSAN_OPTIONS"):
            env.pop(key, None)
        env["ASAN_OPTIONS"] = "abort_on_error=1:detect_leaks=1:symbolize=0"
        env["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:symbolize=0"
        return argv, env

    def poll(self):
        """Reads new output; restarts after a crash while budget remains. True while running."""
        if self.proc is None:
            return False
        self._read_progress()
        code = self.proc.poll()
        if code is None:
            return True
        self._read_progress()  # what it wrote on the way out (final stats)
        self.proc = None
        ran = time.monotonic() - self.started
        remaining = self.deadline - time.monotonic()
        if self.c.stopping or remaining < QUICK_SECONDS:
            return False
        if self.c.engine == "afl":
            # afl-fuzz keeps going after crashes; an early exit is an error worth reading.
            self.stopped_reason = "afl-fuzz exited %d%s (log: %s)" % (
                code, afl_abort_cause(self.log_path), self.log_path)
            return False
        self.quick_crashes = self.quick_crashes + 1 if ran < QUICK_SECONDS else 0
        if self.quick_crashes >= MAX_QUICK_CRASHES:
            self.stopped_reason = "crashes at start-up (on its corpus?): see findings"
            return False
        self._spawn()
        return True

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGINT)
            except OSError:
                pass

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()

    def _read_progress(self):
        if self.c.engine == "afl":
            self._read_afl_stats()
            return
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_pos)
                chunk = f.read()
        except OSError:
            return
        cut = chunk.rfind(b"\n")
        if cut < 0:
            return
        self.log_pos += cut + 1
        for line in chunk[:cut].decode("utf-8", "replace").splitlines():
            update = parse_libfuzzer_status(line)
            if update:
                self.stats.update(update)

    def _read_afl_stats(self):
        inst = "main" if self.index == 0 else "sec%d" % self.index
        stats = parse_afl_plot(self._afl_plot_path())
        if stats:
            stats["execs"] = max(stats["execs"] - self.execs_base, 0)
            self.stats.update(stats)
        final = parse_afl_fuzzer_stats(os.path.join(self.tdir, "afl", inst, "fuzzer_stats"))
        if "stability" in final:
            self.stats["stability"] = final["stability"]


def afl_abort_cause(log_path):
    """': <cause>' from afl-fuzz's 'PROGRAM ABORT : <cause>' line, if it printed one."""
    import re
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\(B", "", tail_of(log_path, 40))
    for line in text.splitlines():
        if "PROGRAM ABORT" in line:
            return ": " + line.split(":", 1)[1].strip()
    return ""


def parse_libfuzzer_status(line):
    """The figures of a libFuzzer progress line ('#1234 NEW cov: 5 ft: 6 corp: 7/89b ...')."""
    if not line.startswith("#"):
        return None
    parts = line.split()
    try:
        out = {"execs": int(parts[0][1:])}
    except ValueError:
        return None
    for key, name in (("cov:", "cov"), ("ft:", "ft"), ("exec/s:", "exec_s"), ("corp:", "corpus")):
        if key in parts:
            value = parts[parts.index(key) + 1]
            try:
                out[name] = int(value.split("/")[0])
            except ValueError:
                pass
    return out


def parse_afl_fuzzer_stats(path):
    """AFL++'s fuzzer_stats ('key : value' lines) as a dict of strings; {} when absent."""
    out = {}
    try:
        with open(path, errors="replace") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def parse_afl_plot(path):
    """The last row of AFL++'s plot_data (updated every few seconds) as status figures."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 4096, 0))
            lines = [l for l in f.read().decode("utf-8", "replace").splitlines()
                     if l and not l.startswith("#")]
    except OSError:
        return None
    if not lines:
        return None
    cols = [c.strip() for c in lines[-1].split(",")]
    # relative_time, cycles_done, cur_item, corpus_count, pending_total, pending_favs,
    # map_size, saved_crashes, saved_hangs, max_depth, execs_per_sec, total_execs, edges_found
    try:
        return {"corpus": int(cols[3]), "cov": int(cols[12]) if len(cols) > 12 else 0,
                "exec_s": int(float(cols[10])), "execs": int(cols[11]),
                "map": cols[6]}
    except (IndexError, ValueError):
        return None


# ---- the campaign --------------------------------------------------------------------------------

# A campaign's units are its targets, plus the concurrent target run free-running under TSan
# ("zpool_concurrent_fuzz+tsan") when the campaign's own sanitizer is another: TSan sees the data
# races the scheduled modes cannot (they run one thread at a time), and ClusterFuzz runs no TSan.
CONCURRENT_TARGET = "zpool_concurrent_fuzz"
TSAN_UNIT = CONCURRENT_TARGET + "+tsan"


def unit_target(unit):
    """The fuzz target a campaign unit runs."""
    return unit.split("+", 1)[0]


def unit_sanitizer(unit, default):
    return "tsan" if unit.endswith("+tsan") else default


def unit_env(unit):
    """What a unit's processes get in their environment beyond fuzz_env()."""
    return {"ZFUZZ_CONCURRENT_MODE": "free"} if unit.endswith("+tsan") else None


class Campaign:
    def __init__(self, args):
        self.known = targets_mod.list_targets()
        self.targets = targets_mod.check_targets(args.targets, self.known)
        self.engine = args.engine
        self.sanitizer = args.sanitizer
        self.bug = args.inject_bug
        targets_mod.check_pair(self.engine, self.sanitizer)
        targets_mod.check_bug(self.bug)
        try:
            self.budget = parse_duration(args.time)
        except ValueError as e:
            raise ZfuzzError("--time: %s" % e, exit_code=2)
        if args.jobs is not None and args.jobs < 1:
            raise ZfuzzError("--jobs must be at least 1", exit_code=2)
        self.jobs = args.jobs or os.cpu_count() or 1
        self.out = os.path.abspath(args.out)
        corpus_root = os.path.realpath(os.path.join(REPO_ROOT, "corpus"))
        real_out = os.path.realpath(self.out)
        if real_out == corpus_root or real_out.startswith(corpus_root + os.sep):
            raise ZfuzzError("--out must not be inside corpus/ (%s)" % self.out, exit_code=2)
        self.merge = not (args.no_merge or self.bug)
        self.units = list(self.targets)
        if (self.engine == "libfuzzer" and self.sanitizer != "tsan" and
                CONCURRENT_TARGET in self.targets and not getattr(args, "no_tsan", False)):
            self.units.append(TSAN_UNIT)
        self.from_empty = getattr(args, "from_empty", False)
        if self.from_empty:
            for t in self.units:
                if count_files(os.path.join(self.target_dir(t), "corpus")) or \
                        os.path.isdir(os.path.join(self.target_dir(t), "afl")):
                    raise ZfuzzError("--from-empty: %s already holds a corpus of %s; give a new "
                                     "--out" % (self.out, t), exit_code=2)
        self.stamp = time.strftime("%Y%m%d-%H%M%S")
        self.variant = targets_mod.variant_name(self.engine, self.sanitizer, self.bug)
        self.stopping = False
        self.binaries = {}
        self.merge_binaries = {}
        self.interval = args.status_interval
        self.tty = sys.stdout.isatty()
        if self.interval is None:
            self.interval = 1.0 if self.tty else 30.0

    def target_dir(self, t):
        return os.path.join(self.out, "targets", t)

    def seed_dirs(self, t):
        if self.from_empty:
            return []
        t = unit_target(t)
        return [d for d in (os.path.join(REPO_ROOT, "corpus", t),
                            os.path.join(REPO_ROOT, "corpus", "regressions", t))
                if os.path.isdir(d)]

    def afl_seed_dir(self, t):
        """AFL++ takes one input directory: the checked-in corpus plus what libFuzzer found,
        gathered (copied, never moved) into the target's state directory."""
        seeds = os.path.join(self.target_dir(t), "afl-seeds")
        os.makedirs(seeds, exist_ok=True)
        for d in self.seed_dirs(t) + [os.path.join(self.target_dir(t), "corpus")]:
            if not os.path.isdir(d):
                continue
            for name in os.listdir(d):
                src = os.path.join(d, name)
                dst = os.path.join(seeds, name)
                if os.path.isfile(src) and not os.path.exists(dst):
                    shutil.copyfile(src, dst)
        if not os.listdir(seeds):
            with open(os.path.join(seeds, "empty"), "wb") as f:
                f.write(b"\0")
        return seeds

    # -- build ------------------------------------------------------------------------------

    def build(self):
        os.makedirs(self.out, exist_ok=True)
        log = os.path.join(self.out, "build.log")
        bindir = os.path.join(self.out, "bin", self.variant)
        self.binaries = targets_mod.build(self.targets, self.engine, self.sanitizer, bindir, log,
                                          self.bug)
        if TSAN_UNIT in self.units:
            tsan_dir = os.path.join(self.out, "bin", targets_mod.variant_name("libfuzzer", "tsan",
                                                                              self.bug))
            built = targets_mod.build([CONCURRENT_TARGET], "libfuzzer", "tsan", tsan_dir, log,
                                      self.bug)
            self.binaries[TSAN_UNIT] = built[CONCURRENT_TARGET]
        if self.engine == "afl" and self.merge:
            # Merging AFL++'s queue into the corpus needs libFuzzer's -merge=1.
            merge_dir = os.path.join(self.out, "bin",
                                     targets_mod.variant_name("libfuzzer", self.sanitizer))
            self.merge_binaries = targets_mod.build(self.targets, "libfuzzer", self.sanitizer,
                                                    merge_dir, log)
        else:
            self.merge_binaries = self.binaries if self.engine == "libfuzzer" else {}
        if TSAN_UNIT in self.units and self.merge_binaries is not self.binaries:
            self.merge_binaries[TSAN_UNIT] = self.binaries[TSAN_UNIT]

    # -- run --------------------------------------------------------------------------------

    def plan(self):
        """Run units in rotation: with fewer targets than jobs, a target gets several."""
        per_target = max(1, self.jobs // len(self.units))
        return [(t, per_target) for t in self.units]

    def run(self):
        for t in self.units:
            for sub in ("corpus", "artifacts", "logs"):
                os.makedirs(os.path.join(self.target_dir(t), sub), exist_ok=True)
        self.results = {t: {"target": t, "seconds": 0.0, "instances": 0, "stats": {},
                            "stopped": None} for t in self.units}
        self.corpus_before = {t: count_files(os.path.join(self.target_dir(t), "corpus"))
                              for t in self.units}
        self.artifacts_before = {t: set(list_artifacts(self.target_dir(t)))
                                 for t in self.units}
        queue = self.plan()
        running = []  # (target, [Instance], Stopwatch)
        free = self.jobs
        say("campaign: %d target(s), %s+%s, %s each, %d job(s); state in %s"
            % (len(self.units), self.sanitizer, self.engine, format_duration(self.budget),
               self.jobs, self.out))
        last_status = 0.0
        drawn = 0
        try:
            while queue or running:
                while queue and (free >= queue[0][1] or not running):
                    t, n = queue.pop(0)
                    n = instances_for(n, free, last=not queue)
                    deadline = time.monotonic() + self.budget
                    insts = [Instance(self, t, i) for i in range(n)]
                    for inst in insts:
                        inst.start(deadline)
                    running.append((t, insts, Stopwatch()))
                    free -= n
                    self.results[t]["instances"] = n
                still = []
                for t, insts, watch in running:
                    alive = [inst.poll() for inst in insts]
                    self._collect(t, insts, watch)
                    if any(alive):
                        still.append((t, insts, watch))
                    else:
                        free += len(insts)
                        if not self.tty:
                            say("%s: done after %s" % (t, format_duration(watch.seconds())))
                running = still
                now = time.monotonic()
                if now - last_status >= self.interval:
                    drawn = self._status(running, drawn)
                    last_status = now
                time.sleep(0.25)
        except KeyboardInterrupt:
            self.stopping = True
            print()
            say("interrupted: stopping the fuzzers, then merging and summarising "
                "(the corpus is only ever added to)")
            for _, insts, _ in running:
                for inst in insts:
                    inst.stop()
            end = time.monotonic() + 10
            for t, insts, watch in running:
                for inst in insts:
                    while inst.proc is not None and inst.proc.poll() is None \
                            and time.monotonic() < end:
                        time.sleep(0.1)
                    inst.kill()
                    inst.poll()
                self._collect(t, insts, watch)
            for t, _ in queue:
                self.results[t]["stopped"] = "not started (interrupted)"
        if self.tty and drawn:
            self._status([], drawn)

    def _collect(self, t, insts, watch):
        r = self.results[t]
        r["seconds"] = watch.seconds()
        total = {"execs": 0, "exec_s": 0, "cov": 0, "ft": 0, "corpus": 0}
        for inst in insts:
            for k in ("execs", "exec_s"):
                total[k] += inst.stats.get(k, 0) or 0
            for k in ("cov", "ft", "corpus"):
                total[k] = max(total[k], inst.stats.get(k, 0) or 0)
            if inst.stats.get("stability"):
                total.setdefault("stability", []).append(inst.stats["stability"])
            if inst.stopped_reason:
                r["stopped"] = inst.stopped_reason
        r["stats"] = total
        r["running"] = any(inst.proc is not None for inst in insts)
        r["left"] = max(0.0, (insts[0].deadline - time.monotonic())) if insts else 0.0

    def _status(self, running, drawn):
        lines = []
        for t, insts, _ in running:
            r = self.results[t]
            s = r["stats"]
            found = len(list_artifacts(self.target_dir(t))) - len(self.artifacts_before[t])
            lines.append("%-22s %8s exec/s  cov %-6s ft %-7s corpus %-6s findings %-3d left %s"
                         % (t, s["exec_s"], s["cov"], s["ft"], s["corpus"], found,
                            format_duration(r["left"])))
        if self.tty:
            out = ""
            if drawn:
                out += "\x1b[%dF" % drawn
            for line in lines:
                out += "\x1b[2K" + line + "\n"
            for _ in range(drawn - len(lines)):
                out += "\x1b[2K\n"
            if drawn > len(lines):
                out += "\x1b[%dF" % (drawn - len(lines))
            sys.stdout.write(out)
            sys.stdout.flush()
            return len(lines)
        for line in lines:
            say(line)
        return 0

    # -- merge and findings -------------------------------------------------------------------

    def merge_corpora(self):
        for t in self.units:
            r = self.results[t]
            repo_corpus = os.path.join(REPO_ROOT, "corpus", unit_target(t))
            new_dirs = [os.path.join(self.target_dir(t), "corpus")]
            afl = os.path.join(self.target_dir(t), "afl")
            if os.path.isdir(afl):
                for inst in sorted(os.listdir(afl)):
                    queue = os.path.join(afl, inst, "queue")
                    if os.path.isdir(queue):
                        new_dirs.append(queue)
            r["corpus_files_before"] = count_files(repo_corpus)
            if not self.merge:
                r["merged"] = 0
                r["corpus_files_after"] = r["corpus_files_before"]
                continue
            binary = self.merge_binaries.get(t)
            before = set(os.listdir(repo_corpus)) if os.path.isdir(repo_corpus) else set()
            os.makedirs(repo_corpus, exist_ok=True)
            log = os.path.join(self.target_dir(t), "logs", "merge-%s.log" % self.stamp)
            argv = [binary, "-merge=1", "-timeout=%d" % INPUT_TIMEOUT,
                    "-artifact_prefix=" + os.path.join(self.target_dir(t), "artifacts") + "/"]
            if self.known[unit_target(t)]["max_len"]:
                argv.append("-max_len=%d" % self.known[unit_target(t)]["max_len"])
            argv += [repo_corpus] + [d for d in new_dirs if os.path.isdir(d)]
            # Ctrl-C during the merge would leave nothing worse than fewer additions, but the
            # user asked for a summary: the merge is short, let it finish.
            old = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                with open(log, "wb") as out:
                    proc = subprocess.run(argv, cwd=self.target_dir(t), stdout=out,
                                          stderr=subprocess.STDOUT,
                                          env=targets_mod.fuzz_env(unit_env(t)),
                                          start_new_session=True)
            finally:
                signal.signal(signal.SIGINT, old)
            after = set(os.listdir(repo_corpus))
            lost = before - after
            if lost:  # libFuzzer's merge never deletes; this guards our own promise anyway
                raise ZfuzzError("merge lost %d input(s) of %s: see %s" % (len(lost), repo_corpus,
                                                                           log))
            r["merged"] = len(after - before)
            r["corpus_files_after"] = len(after)
            if proc.returncode != 0:
                warn("%s: merge exited %d (log: %s); added %d input(s)"
                     % (t, proc.returncode, log, r["merged"]))

    def process_findings(self):
        fdir = os.path.join(self.out, "findings")
        self.new_findings = []
        for t in self.units:
            r = self.results[t]
            r["findings_new"] = 0
            r["artifacts"] = 0
            fresh = [p for p in list_artifacts(self.target_dir(t))
                     if p not in self.artifacts_before[t]]
            r["artifacts"] = len(fresh)
            for path in fresh:
                meta = {"target": unit_target(t), "engine": self.engine,
                        "sanitizer": unit_sanitizer(t, self.sanitizer), "env": unit_env(t),
                        "bug": self.bug, "commit": targets_mod.git_commit(),
                        "time": findings.now(), "artifact": os.path.basename(path)}
                report, fallback, meta_more = examine_artifact(
                    self.binaries[t], self.engine, path, os.path.join(self.target_dir(t), "logs"),
                    cwd=self.target_dir(t), tries=replay_tries(t), env=unit_env(t))
                meta.update(meta_more)
                directory, new = findings.write_finding(fdir, path, report, meta, fallback)
                if new:
                    r["findings_new"] += 1
                    self.new_findings.append(directory)

    def summary(self):
        rows = []
        for t in self.units:
            r = self.results[t]
            s = r["stats"] or {}
            rows.append({
                "target": t, "engine": self.engine,
                "sanitizer": unit_sanitizer(t, self.sanitizer),
                "bug": self.bug, "seconds": round(r["seconds"], 1), "jobs": r["instances"],
                "execs": s.get("execs", 0),
                "execs_per_sec": int(s.get("execs", 0) / r["seconds"]) if r["seconds"] else 0,
                "coverage": s.get("cov", 0), "features": s.get("ft", 0),
                "work_corpus": count_files(os.path.join(self.target_dir(t), "corpus")),
                "corpus_before": r.get("corpus_files_before", 0),
                "corpus_after": r.get("corpus_files_after", 0), "merged": r.get("merged", 0),
                "artifacts": r.get("artifacts", 0), "new_findings": r.get("findings_new", 0),
                "afl_stability": ", ".join(s.get("stability", [])) or None,
                "note": r.get("stopped") or "",
            })
        all_findings = findings.list_findings(os.path.join(self.out, "findings"))
        data = {"campaign": self.stamp, "engine": self.engine, "sanitizer": self.sanitizer,
                "bug": self.bug, "budget_seconds": self.budget, "jobs": self.jobs,
                "commit": targets_mod.git_commit(), "interrupted": self.stopping,
                "merged_into_corpus": self.merge, "targets": rows,
                "findings": [{k: f.get(k) for k in ("state_id", "target", "kind", "frames",
                                                     "location", "path", "duplicates", "time",
                                                     "reproduced", "replayed", "report_from",
                                                     "log")}
                             for f in all_findings]}
        path = os.path.join(self.out, "summary.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
        runs = os.path.join(self.out, "runs")
        os.makedirs(runs, exist_ok=True)
        shutil.copyfile(path, os.path.join(runs, "summary-%s.json" % self.stamp))
        print_summary(data, self.new_findings)
        say("summary: %s" % path)
        return data


# ---- findings: the fuzzer's report, then replays -------------------------------------------------

# Replays of a finding before it is called not reproduced. Free-running threads make the
# concurrent target's failures depend on timing; the others fail on the first run or never.
REPLAY_TRIES = 3
CONCURRENT_REPLAY_TRIES = 10


def replay_tries(target):
    return CONCURRENT_REPLAY_TRIES if "concurrent" in target else REPLAY_TRIES


def original_report(logs_dir, artifact):
    """(log path, report) of the fuzzer run that wrote `artifact`, newest log first; (None, None)
    when no log names it (AFL++ keeps no output of its target)."""
    name = os.path.basename(artifact)
    try:
        logs = sorted((os.path.join(logs_dir, n) for n in os.listdir(logs_dir)
                       if n.endswith(".log") and not n.startswith("merge-")),
                      key=os.path.getmtime, reverse=True)
    except OSError:
        return None, None
    for log in logs:
        try:
            with open(log, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if name not in text:
            continue
        report = findings.report_from_log(text, name)
        if report:
            return log, report
    return None, None


def replay(binary, engine, path, cwd, tries, env=None):
    """Runs the artifact up to `tries` times, stopping at the first failure.
    Returns (runs, failed: bool, output of the failing run or of the last clean one)."""
    env = targets_mod.fuzz_env(env)
    argv = [binary, path]
    if engine == "libfuzzer":
        argv = [binary, "-timeout=%d" % INPUT_TIMEOUT, "-runs=1", path]
    text = ""
    for run in range(1, tries + 1):
        try:
            proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  env=env, timeout=INPUT_TIMEOUT * 4, cwd=cwd)
        except subprocess.TimeoutExpired as e:
            out = (e.stdout or b"").decode("utf-8", "replace")
            return run, True, out + "\nERROR: libFuzzer: timeout (zfuzz: re-run exceeded %d s)\n" \
                % (INPUT_TIMEOUT * 4)
        text = proc.stdout.decode("utf-8", "replace")
        if proc.returncode != 0:
            return run, True, text
    return tries, False, text


def examine_artifact(binary, engine, path, logs_dir, cwd, tries, env=None):
    """What is kept of one artifact: (report text, fallback kind, metadata).

    The report is the fuzzer's own, from its log, when one names the artifact, with the replay
    after it; else the failing replay's. A finding that did not fail again keeps the fuzzer's
    report and says so ("replayed": "0/N")."""
    log, report = original_report(logs_dir, path)
    runs, failed, replay_text = replay(binary, engine, path, cwd, tries, env)
    fallback = findings.kind_from_artifact_name(os.path.basename(path))
    verdict = ("failed again on replay %d of %d" % (runs, tries) if failed else
               "did not fail again in %d replay%s: flaky or timing-dependent"
               % (tries, "" if tries == 1 else "s"))
    meta = {"replayed": "%d/%d" % (1 if failed else 0, runs), "reproduced": failed,
            "replay_runs": runs, "report_from": "fuzzer log" if report else "replay",
            "log": log}
    if report:
        text = ("== the fuzzer's report (%s) ==\n%s\n== replay: %s ==\n%s"
                % (log, report, verdict, replay_text if failed else ""))
    elif failed:
        text = replay_text
    else:
        text = ("(zfuzz: no fuzzer log names this input, and it %s)\n%s" % (verdict, replay_text))
        meta["report_from"] = "artifact name" if fallback else "none"
    return text, fallback, meta


def print_summary(data, new_dirs=()):
    print()
    head = ("target", "time", "execs", "exec/s", "cov", "ft", "corpus", "merged", "findings")
    fmt = "%-26s %7s %10s %8s %6s %7s %13s %6s %8s"
    print(fmt % head)
    print(fmt % tuple("-" * n for n in (26, 7, 10, 8, 6, 7, 13, 6, 8)))
    for r in data["targets"]:
        corpus = "%d" % r["corpus_after"] if not data["merged_into_corpus"] else \
            "%d -> %d" % (r["corpus_before"], r["corpus_after"])
        print(fmt % (r["target"], format_duration(r["seconds"]), r["execs"], r["execs_per_sec"],
                     r["coverage"], r["features"], corpus, r["merged"], r["new_findings"]))
        if r.get("afl_stability"):
            print("    AFL++ stability: %s" % r["afl_stability"])
        if r["note"]:
            print("    note: %s" % r["note"])
    if not data["merged_into_corpus"]:
        print("(corpus/ left unchanged: new inputs stay under the campaign's targets/*/corpus)")
    found = data["findings"]
    print()
    if not found:
        print("no findings")
        return
    print("findings (one reproducer per crash state; * = new in this campaign):")
    new_set = set(os.path.abspath(d) for d in new_dirs)
    for f in found:
        mark = "*" if os.path.dirname(os.path.abspath(f["path"])) in new_set else " "
        print(" %s %s  %-22s %s" % (mark, f["state_id"], f["target"], f["kind"]))
        print("      at %s" % " <- ".join(f["frames"] or ["?"]))
        if f.get("reproduced") is False:
            print("      NOT REPRODUCED: 0 of %s replays failed; the report is the fuzzer's, from"
                  % str(f.get("replayed", "0/?")).split("/")[-1])
            print("      %s" % display_path(f["log"]) if f.get("log") else
                  "      (no fuzzer log named it: the kind is what its file name says)")
        print("      tools/zfuzz repro %s" % display_path(f["path"]))


def instances_for(planned, free, last):
    """Processes for the next target: as planned, within the free jobs; the last target of the
    rotation takes every free job (a core would idle otherwise)."""
    if last:
        return max(free, 1)
    return min(planned, max(free, 1))


def display_path(path):
    """A path relative to the working directory when it is under it, else absolute."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def count_files(d):
    try:
        return sum(1 for n in os.listdir(d) if not n.startswith("."))
    except OSError:
        return 0


def list_artifacts(tdir):
    """Crash inputs of a target: libFuzzer's artifacts and AFL++'s crashes/ files."""
    out = []
    art = os.path.join(tdir, "artifacts")
    if os.path.isdir(art):
        out += sorted(os.path.join(art, n) for n in os.listdir(art)
                      if n.startswith(ARTIFACT_PREFIXES) and not n.startswith("slow-unit-"))
    afl = os.path.join(tdir, "afl")
    if os.path.isdir(afl):
        for inst in sorted(os.listdir(afl)):
            for sub in ("crashes", "hangs"):  # hangs: inputs over afl-fuzz's -t
                found = os.path.join(afl, inst, sub)
                if os.path.isdir(found):
                    out += sorted(os.path.join(found, n) for n in os.listdir(found)
                                  if n.startswith("id:"))
    return out


def run_fuzz(args):
    campaign = Campaign(args)
    from . import setup
    needed = setup.setup_needed()
    if needed:
        say("set-up needed (%s): running tools/zfuzz setup" % ", ".join(needed))
        setup.run_setup()
    campaign.build()
    # Ctrl-C and SIGTERM (e.g. from a CI job's timeout) both end the campaign gracefully.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    campaign.run()
    campaign.merge_corpora()
    campaign.process_findings()
    campaign.summary()
    return 0 if not campaign.new_findings else 1


def _terminate(signum, frame):
    raise KeyboardInterrupt
