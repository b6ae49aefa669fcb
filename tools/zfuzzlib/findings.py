# SPDX-License-Identifier: GPL-2.0-only
"""Findings: what a crash report says (its kind and crash state), and how a reproducer is kept.

The crash state is the ClusterFuzz idea: the kind of failure plus the top three frames of the
symbolized stack that belong to the program (sanitizer runtimes, libFuzzer, libc's abort path and
our own WARN/BUG reporting machinery skipped). Two inputs with one state are one bug.

A kept finding is a directory under <out>/findings/: the input (crash-<sha1>), its metadata
(crash-<sha1>.json: target, engine, sanitizer, injected bug, commit, time, state, how often it
replayed) and the symbolized report (crash-<sha1>.txt). `tools/zfuzz repro` reads the metadata to
rebuild the binary that found it.

The report that counts is the one the fuzzer printed when the input failed (libFuzzer's log,
which names the artifact it wrote): a free-running concurrent finding may not fail again, and its
crash state must not be lost with it. Replays are recorded beside it, never instead of it.
"""
import datetime
import hashlib
import json
import os
import re

from .common import ZfuzzError

# "    #3 0x55d0c0ffee in zs_malloc(zs_pool*, unsigned long) /proc/self/cwd/zpool/zsmalloc.cc:12:5"
_FRAME_RE = re.compile(r"^\s*#(\d+)\s+0x[0-9a-fA-F]+\s+(?:in\s+)?(.*?)\s*$")
_KINDS = [
    # The harnesses' own oracle (fuzz/api: ReportFinding), then abort.
    (re.compile(r"zfuzz: FINDING at (\S+?):(\d+): (.*)$"),
     lambda m: "FINDING %s" % _short_message(m.group(3), words=10)),
    # (regex on a line, kind builder); the first line that matches names the failure.
    (re.compile(r"kernel BUG at (\S+?):(\d+)! (\S+?):"), lambda m: "BUG in %s" % m.group(3)),
    (re.compile(r"WARNING: CPU: \d+ PID: \d+ at (\S+?):(\d+) (\S+?): (.*)$"),
     lambda m: "WARN in %s: %s" % (m.group(3), _short_message(m.group(4)))),
    (re.compile(r"ERROR: AddressSanitizer: ([\w-]+)"), lambda m: "ASan %s" % m.group(1)),
    (re.compile(r"ERROR: LeakSanitizer: detected memory leaks"), lambda m: "LSan leak"),
    (re.compile(r"WARNING: MemorySanitizer: ([\w-]+)"), lambda m: "MSan %s" % m.group(1)),
    (re.compile(r"WARNING: ThreadSanitizer: ([\w -]+?)(?: \(pid=\d+\))?$"),
     lambda m: "TSan %s" % m.group(1).strip()),
    (re.compile(r"ThreadSanitizer: ([\w -]+?) "), lambda m: "TSan %s" % m.group(1).strip()),
    (re.compile(r"(\S+?):(\d+):\d+: runtime error: (.*)$"),
     lambda m: "UBSan %s" % _short_message(m.group(3))),
    (re.compile(r"ERROR: libFuzzer: (timeout|out-of-memory|deadly signal|fuzz target exited)"),
     lambda m: "libFuzzer %s" % m.group(1)),
]
_ACCESS_RE = re.compile(r"^(READ|WRITE) of size (\d+)")
# libFuzzer: "artifact_prefix='/o/'; Test unit written to /o/crash-<sha1>"
_WRITTEN_RE = re.compile(r"Test unit written to (\S+)\s*$")
# libFuzzer's progress lines ("#1234\tNEW cov: ..."), which a failure's report follows.
_STATUS_RE = re.compile(r"^#\d+\s")
_SIGNALS = {4: "SIGILL", 6: "SIGABRT", 7: "SIGBUS", 8: "SIGFPE", 9: "SIGKILL", 11: "SIGSEGV"}
# Frames that say where the report came from, not where the bug is.
_SKIP_FRAME = re.compile(
    r"^(__sanitizer|__asan|__lsan|__ubsan|__msan|__tsan|__interceptor|__interception|"
    r"fuzzer::|abort|raise|__pthread_kill|pthread_kill|__libc_|_start|start_thread|clone|"
    r"kc_warn_report|kc_warn_abort|kc_bug_report|kc::CaptureStack|kc::FormatStack|"
    r"operator new|operator delete|malloc|calloc|realloc|free|"
    r"std::__|__cxa_|__gxx_|_Unwind|"
    r"LLVMFuzzerTestOneInput|main$|\(/)")
_SOURCE_PREFIXES = ("/proc/self/cwd/",)
# A frame in the C++ library's headers (std::atomic's load() inlined into a lock): where the
# access happened, not where the bug is.
_SYSTEM_HEADER = re.compile(r"/include/c\+\+/|/c\+\+/v1/|/lib/gcc/")


def _short_message(text, words=8):
    # Numbers (addresses, sizes, counts) differ between inputs hitting one bug: drop them.
    text = re.sub(r"0x[0-9a-fA-F]+|\b\d+\b", "N", text.strip())
    return " ".join(text.split()[:words])


def _function(text):
    """'zs_malloc(zs_pool*, unsigned long) /path:1:2' -> 'zs_malloc'."""
    text = text.strip()
    # Drop the location: the last space-separated token when it looks like a path or module.
    parts = text.rsplit(" ", 1)
    if len(parts) == 2 and ("/" in parts[1] or parts[1].startswith("(") or ":" in parts[1]
                            or parts[1] in ("<null>", "crtstuff.c")):
        text = parts[0]
    text = text.replace("(anonymous namespace)::", "")
    # Drop the parameter list (balanced parentheses at the end).
    depth, cut = 0, len(text)
    for i in range(len(text) - 1, -1, -1):
        ch = text[i]
        if ch == ")":
            depth += 1
        elif ch == "(":
            depth -= 1
            if depth == 0:
                cut = i
                break
    if cut < len(text) and not text.startswith("("):
        text = text[:cut]
    return text.strip() or "?"


def parse_report(text):
    """{'kind': str, 'frames': [function...], 'location': 'file:line' or ''} of a crash report."""
    lines = text.splitlines()
    kind, start = None, 0
    for i, line in enumerate(lines):
        for regex, build in _KINDS:
            m = regex.search(line)
            if m:
                kind, start = build(m), i
                break
        if kind:
            break
    if kind and kind.startswith("ASan "):
        for line in lines[start + 1:start + 3]:
            access = _ACCESS_RE.match(line.strip())
            if access:
                kind += " %s %s" % (access.group(1), access.group(2))
    frames, location = [], ""
    seen_stack = False
    for line in lines[start:]:
        m = _FRAME_RE.match(line)
        if not m:
            if seen_stack and frames:
                break
            continue
        seen_stack = True
        what = m.group(2)
        func = _function(what)
        if _SKIP_FRAME.match(func) or _SKIP_FRAME.match(what) or _SYSTEM_HEADER.search(what):
            continue
        if not location:
            loc = re.search(r"(\S+\.(?:cc|h|c|cpp)):(\d+)", what)
            if loc:
                path = loc.group(1)
                for prefix in _SOURCE_PREFIXES:
                    if path.startswith(prefix):
                        path = path[len(prefix):]
                location = "%s:%s" % (path, loc.group(2))
        frames.append(func)
        if len(frames) == 3:
            break
    return {"kind": kind or "unknown crash", "frames": frames, "location": location}


def report_from_log(text, artifact_name):
    """What libFuzzer printed for the input it saved as `artifact_name` (a base name): the lines
    after its last progress line up to 'Test unit written to ...'; None when this log did not
    write that artifact."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = _WRITTEN_RE.search(line)
        if not m or os.path.basename(m.group(1)) != artifact_name:
            continue
        start = i
        while start > 0 and not _STATUS_RE.match(lines[start - 1]) \
                and not lines[start - 1].startswith("$ "):
            start -= 1
        # A failure on the first inputs follows libFuzzer's preamble (INFO: Seed ... lines).
        while start < i and lines[start].startswith("INFO: "):
            start += 1
        return "\n".join(lines[start:i + 1]) + "\n"
    return None


def kind_from_artifact_name(name):
    """The kind an artifact's name alone tells: AFL++'s crashes/ and hangs/ files, libFuzzer's
    timeout-, oom- and leak- prefixes. None for a plain crash- file."""
    if name.startswith("timeout-"):
        return "libFuzzer timeout"
    if name.startswith("oom-"):
        return "libFuzzer out-of-memory"
    if name.startswith("leak-"):
        return "LSan leak"
    if name.startswith("id:"):
        m = re.search(r"(?:^|,)sig:(\d+)", name)
        if m:
            number = int(m.group(1))
            return "AFL++ crash (signal %d%s)" % (
                number, ", " + _SIGNALS[number] if number in _SIGNALS else "")
        return "AFL++ timeout (hang)"
    return None


def crash_state(report):
    """The dedup key of a parsed report: its kind and top three frames, one per line."""
    return "\n".join([report["kind"]] + report["frames"])


def state_id(state):
    return hashlib.sha1(state.encode()).hexdigest()[:12]


def sha1_of(path):
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()


def metadata_path(input_path):
    return input_path + ".json"


def write_finding(findings_dir, input_path, report_text, meta, fallback_kind=None):
    """Keeps one reproducer per crash state. Returns (directory, new: bool).

    The state comes from report_text (the fuzzer's own report when there is one); when nothing
    in it names a failure, from fallback_kind (what the artifact's name tells)."""
    parsed = parse_report(report_text)
    if parsed["kind"] == "unknown crash" and fallback_kind:
        parsed["kind"] = fallback_kind
    state = crash_state(parsed)
    sid = state_id(state)
    directory = os.path.join(findings_dir, sid)
    meta_file = None
    if os.path.isdir(directory):
        for name in os.listdir(directory):
            if name.endswith(".json"):
                meta_file = os.path.join(directory, name)
        if meta_file:
            with open(meta_file) as f:
                kept = json.load(f)
            kept["duplicates"] = kept.get("duplicates", 0) + 1
            _write_json(meta_file, kept)
            return directory, False
    os.makedirs(directory, exist_ok=True)
    digest = sha1_of(input_path)
    kept_input = os.path.join(directory, "crash-" + digest)
    with open(input_path, "rb") as src, open(kept_input, "wb") as dst:
        dst.write(src.read())
    with open(kept_input + ".txt", "w") as f:
        f.write(report_text)
    record = dict(meta)
    record.update({
        "state": state, "state_id": sid, "kind": parsed["kind"], "frames": parsed["frames"],
        "location": parsed["location"], "input": os.path.basename(kept_input),
        "original": os.path.abspath(input_path), "sha1": digest, "duplicates": 0,
    })
    record.setdefault("time", now())
    _write_json(metadata_path(kept_input), record)
    return directory, True


def read_metadata(input_path):
    """The metadata of a finding: its sidecar JSON, or None. Raises on a corrupt sidecar."""
    path = metadata_path(input_path)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            meta = json.load(f)
    except ValueError as e:
        raise ZfuzzError("%s: corrupt metadata (%s); pass --target and --sanitizer" % (path, e))
    if not isinstance(meta, dict):
        raise ZfuzzError("%s: corrupt metadata (not an object); pass --target and --sanitizer"
                         % path)
    return meta


def list_findings(findings_dir):
    """Every kept finding's metadata, oldest first."""
    out = []
    if not os.path.isdir(findings_dir):
        return out
    for sid in sorted(os.listdir(findings_dir)):
        directory = os.path.join(findings_dir, sid)
        if not os.path.isdir(directory):
            continue
        for name in sorted(os.listdir(directory)):
            if name.startswith("crash-") and name.endswith(".json"):
                try:
                    with open(os.path.join(directory, name)) as f:
                        meta = json.load(f)
                except (OSError, ValueError):
                    continue
                meta["path"] = os.path.join(directory, name[:-len(".json")])
                out.append(meta)
    out.sort(key=lambda m: m.get("time", ""))
    return out


def now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)
