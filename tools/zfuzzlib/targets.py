# SPDX-License-Identifier: GPL-2.0-only
"""The fuzz targets, and building their binaries for one engine and sanitizer.

Targets are read from fuzz/BUILD (every `zfuzz_target(name = ...)`), with their `max_len` option.
A build runs `bazel build --config=<sanitizer>-<engine>` with its convenience symlinks under a
work directory (the workspace's bazel-bin is left alone) and copies the binaries out, so a later
build in the same workspace cannot swap a binary under a running fuzzer. An injected-bug build
(`--define=zfuzz_bug=NAME`, test-only) gets its own output directory through --platform_suffix,
so it never evicts the normal build from Bazel's output tree.
"""
import json
import os
import re
import shutil
import subprocess

from .common import REPO_ROOT, ZfuzzError, say, tail_of

ENGINES = ("libfuzzer", "afl", "replay")
SANITIZERS = ("asan", "ubsan", "msan", "tsan")
# AFL++ 4.04c's afl-clang-fast (clang 14) has no MSan runtime that matches our libc++, and TSan
# under a forkserver is not supported: the pairs .bazelrc defines.
AFL_SANITIZERS = ("asan", "ubsan")
INJECTED_BUGS = ("class_index", "span_copyback", "compact_unlocked", "create_refcount",
                 "under_reclaim", "free_lock_gap", "map_lock_gap", "driver_ref_gap",
                 "reclaim_recheck", "fullness_ratio", "first_object", "compact_dst_order")

def _call_blocks(text, function):
    """The argument text of each top-level `function(...)` call in a BUILD file."""
    blocks = []
    for m in re.finditer(r"(?m)^%s\(" % re.escape(function), text):
        depth, i, quote = 1, m.end(), None
        while i < len(text) and depth:
            ch = text[i]
            if quote:
                if ch == "\\":
                    i += 1
                elif ch == quote:
                    quote = None
            elif ch in "\"'":
                quote = ch
            elif ch == "#":
                nl = text.find("\n", i)
                i = len(text) if nl < 0 else nl
                continue
            elif ch in "([{":
                depth += 1
            elif ch in ")]}":
                depth -= 1
            i += 1
        blocks.append(text[m.end():i - 1])
    return blocks


def _string_list(block, attr):
    m = re.search(r"\b%s\s*=\s*\[([^\]]*)\]" % attr, block)
    return re.findall(r'"([^"]*)"', m.group(1)) if m else []


def parse_fuzz_build(text):
    """The zfuzz_target calls of fuzz/BUILD: [{name, srcs, deps, dict, options}] in file order."""
    targets = []
    for block in _call_blocks(text, "zfuzz_target"):
        name = re.search(r'\bname\s*=\s*"([^"]+)"', block)
        if not name:
            continue
        dict_label = re.search(r'\bdict\s*=\s*"([^"]+)"', block)
        options = {}
        m = re.search(r"\boptions\s*=\s*\{([^}]*)\}", block)
        if m:
            options = dict(re.findall(r'"([^"]+)"\s*:\s*"([^"]*)"', m.group(1)))
        targets.append({
            "name": name.group(1),
            "srcs": _string_list(block, "srcs"),
            "deps": _string_list(block, "deps"),
            "dict": dict_label.group(1) if dict_label else None,
            "options": options,
            "upstream": bool(re.search(r"\bupstream\s*=\s*True\b", block)),
        })
    return targets


def list_targets(build_file=None):
    """{target: {name, srcs, deps, dict, options, max_len}} in the order fuzz/BUILD declares."""
    path = build_file or os.path.join(REPO_ROOT, "fuzz", "BUILD")
    try:
        with open(path) as f:
            text = f.read()
    except OSError as e:
        raise ZfuzzError("cannot read the fuzz targets from %s: %s" % (path, e.strerror))
    targets = {}
    for t in parse_fuzz_build(text):
        max_len = t["options"].get("max_len", "")
        t["max_len"] = int(max_len) if max_len.isdigit() else None
        targets[t["name"]] = t
    if not targets:
        raise ZfuzzError("no zfuzz_target found in %s" % path)
    return targets


_UPSTREAM_STATUS = []


def upstream_status():
    """(available, one-line status) of @linux_source, the kernel's own files that the upstream
    targets link (tools/bazel/linux_source.bzl), read from its SOURCE.txt once per process."""
    if not _UPSTREAM_STATUS:
        line = "unknown"
        proc = subprocess.run(["bazel", "build", "@linux_source//:SOURCE.txt"], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = subprocess.run(["bazel", "info", "output_base"], cwd=REPO_ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL).stdout.strip()
        path = os.path.join(base, "external", "linux_source", "SOURCE.txt")
        if proc.returncode == 0 and os.path.exists(path):
            with open(path) as f:
                line = f.readline().strip()
        _UPSTREAM_STATUS.append((line.startswith("Linux "), line))
    return _UPSTREAM_STATUS[0]


def check_targets(names, known=None, status=None):
    """The names (`x` or `//fuzz:x`), validated against fuzz/BUILD, each once (all of them
    when names is empty). Targets that link the kernel's own files are left out of "all" with a
    line saying why when @linux_source is unavailable, and are an error when named."""
    known = known if known is not None else list_targets()
    status = status or upstream_status

    def links_upstream(name):
        return isinstance(known, dict) and bool(known[name].get("upstream"))

    if not names:
        chosen = list(known)
        upstream = [t for t in chosen if links_upstream(t)]
        if upstream:
            ok, line = status()
            if not ok:
                say("skipping %s: the kernel's own files are unavailable (%s)"
                    % (", ".join(upstream), line))
                chosen = [t for t in chosen if t not in upstream]
        return chosen
    chosen = []
    for item in names:
        name = item[len("//fuzz:"):] if item.startswith("//fuzz:") else item
        if name not in known:
            raise ZfuzzError("unknown target %r (known: %s)" % (item, ", ".join(known)),
                             exit_code=2)
        if links_upstream(name):
            ok, line = status()
            if not ok:
                raise ZfuzzError("%s links the kernel's own files, which are unavailable: %s"
                                 % (name, line), exit_code=2)
        if name not in chosen:
            chosen.append(name)
    return chosen


def check_pair(engine, sanitizer):
    if engine == "replay" and sanitizer is None:
        return  # the default config: no sanitizer
    if engine not in ENGINES:
        raise ZfuzzError("unknown engine %r (known: libfuzzer, afl)" % engine, exit_code=2)
    if sanitizer not in SANITIZERS:
        raise ZfuzzError("unknown sanitizer %r (known: %s)" % (sanitizer, ", ".join(SANITIZERS)),
                         exit_code=2)
    if engine == "afl" and sanitizer not in AFL_SANITIZERS:
        raise ZfuzzError("AFL++ builds support %s, not %s (use --engine libfuzzer)"
                         % (" and ".join(AFL_SANITIZERS), sanitizer), exit_code=2)


def check_bug(bug):
    if bug is not None and bug not in INJECTED_BUGS:
        raise ZfuzzError("unknown injected bug %r (known: %s)" % (bug, ", ".join(INJECTED_BUGS)),
                         exit_code=2)


def variant_name(engine, sanitizer, bug=None):
    """A directory-safe name of a build variant, e.g. asan-libfuzzer or asan-libfuzzer-bug-x."""
    name = "%s-%s" % (sanitizer or "plain", engine)
    return name + ("-bug-" + bug if bug else "")


def bazel_flags(engine, sanitizer, bug=None):
    check_pair(engine, sanitizer)
    check_bug(bug)
    flags = ["--config=%s-%s" % (sanitizer, engine)]
    if engine == "replay":
        # The replay binaries are the ones `bazel test --config=<sanitizer>` builds: same
        # flags, same output tree, so a repro after a test run rebuilds nothing.
        flags = ["--config=%s" % sanitizer] if sanitizer else []
    if bug:
        flags += ["--define=zfuzz_bug=" + bug,
                  "--platform_suffix=" + variant_name(engine, sanitizer, bug)]
    from .testcmd import bazel_common_flags
    return flags + bazel_common_flags()


def binary_suffix(engine):
    return {"libfuzzer": "_libfuzzer", "afl": "_afl", "replay": "_replay"}[engine]


def require_tools(engine):
    needed = ["bazel"] + (["afl-fuzz"] if engine == "afl" else [])
    for tool in needed:
        if shutil.which(tool) is None:
            raise ZfuzzError("%s not found: run tools/zfuzz setup first" % tool)


def build(targets, engine, sanitizer, dest, log_path, bug=None):
    """Builds //fuzz:<t><suffix> for every target; copies each into dest/<t>. {target: path}.

    Raises ZfuzzError with the failing step's last log lines on a failed build."""
    require_tools(engine)
    os.makedirs(dest, exist_ok=True)
    labels = ["//fuzz:%s%s" % (t, binary_suffix(engine)) for t in targets]
    prefix = os.path.join(dest, ".bazel-")
    argv = ["bazel", "build"] + bazel_flags(engine, sanitizer, bug) + [
        "--symlink_prefix=" + prefix, "--"] + labels
    say("building %d %s binar%s (%s; log: %s)" % (len(labels), engine,
                                                  "y" if len(labels) == 1 else "ies",
                                                  variant_name(engine, sanitizer, bug), log_path))
    with open(log_path, "ab") as log:
        log.write(("$ " + " ".join(argv) + "\n").encode())
        log.flush()
        proc = subprocess.run(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        cause = _build_error(log_path)
        raise ZfuzzError("bazel build of %s failed%s (log: %s)"
                         % (variant_name(engine, sanitizer, bug), cause, log_path))
    bindir = prefix + "bin"
    out = {}
    for t in targets:
        built = os.path.join(bindir, "fuzz", t + binary_suffix(engine))
        if not os.path.exists(built):
            raise ZfuzzError("bazel build succeeded but %s is missing" % built)
        path = os.path.join(dest, t)
        tmp = path + ".tmp"
        shutil.copyfile(built, tmp)
        os.chmod(tmp, 0o755)
        os.replace(tmp, path)
        out[t] = path
    return out


def _build_error(log_path):
    for line in tail_of(log_path, 200).splitlines():
        if line.startswith("ERROR:") or ": error:" in line:
            return ": " + line.strip()[:200]
    return ""


def git_commit():
    try:
        proc = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        commit = proc.stdout.strip() if proc.returncode == 0 else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except OSError:
        return "unknown"


def fuzz_env(extra=None):
    """The environment a fuzz binary runs in: 4 virtual CPUs' worth of tests' settings and
    symbolized sanitizer reports."""
    env = dict(os.environ)
    symbolizer = "/usr/lib/llvm-19/bin/llvm-symbolizer"
    if os.path.exists(symbolizer):
        for key in ("ASAN", "UBSAN", "MSAN", "TSAN", "LSAN"):
            env.setdefault(key + "_SYMBOLIZER_PATH", symbolizer)
        env.setdefault("LLVM_SYMBOLIZER_PATH", symbolizer)
    # handle_abort/handle_sigill: a BUG_ON's abort() and a harness check's trap get a
    # symbolized stack from the sanitizer in every binary, also the replay one (no libFuzzer
    # handler there), so a finding's crash state is the same wherever it is run.
    signals = "handle_abort=1:handle_sigill=1"
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1:symbolize=1:abort_on_error=0:" + signals)
    env.setdefault("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1:symbolize=1:" + signals)
    env.setdefault("MSAN_OPTIONS", "halt_on_error=1:symbolize=1:" + signals)
    env.setdefault("TSAN_OPTIONS", "halt_on_error=1:second_deadlock_stack=1:symbolize=1:" +
                   signals)
    if extra:
        env.update(extra)
    return env


def read_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None
