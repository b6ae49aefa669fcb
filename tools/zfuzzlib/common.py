# SPDX-License-Identifier: GPL-2.0-only
"""Shared helpers: the repository root, running commands without a shell, one-line errors."""
import os
import shutil
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


class ZfuzzError(Exception):
    """A failure with a one-line cause for the user; the CLI prints it and exits non-zero."""

    def __init__(self, message, exit_code=1):
        super().__init__(message)
        self.exit_code = exit_code


def cache_dir():
    """Where machine-wide build products live (outside the repository, survives clones)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "zfuzz")


def say(message):
    print(f"zfuzz: {message}", flush=True)


def warn(message):
    print(f"zfuzz: warning: {message}", file=sys.stderr, flush=True)


def run(argv, *, cwd=None, env=None, check=True, capture=False, step=None, quiet=False,
        log_path=None):
    """Runs argv (a list: never through a shell). Raises ZfuzzError naming `step` on failure.

    With log_path, output goes to that file and the tail of it is shown on failure.
    """
    assert isinstance(argv, (list, tuple)), "commands are argument lists, never shell strings"
    what = step or os.path.basename(str(argv[0]))
    if not quiet:
        say("$ " + " ".join(str(a) for a in argv))
    try:
        if log_path:
            with open(log_path, "ab") as log:
                proc = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
        elif capture:
            proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, errors="replace")
        else:
            proc = subprocess.run(argv, cwd=cwd, env=env)
    except FileNotFoundError:
        raise ZfuzzError(f"{what}: command not found: {argv[0]}")
    if check and proc.returncode != 0:
        detail = ""
        if log_path:
            # Context first, then the one-line cause (printed last by the CLI).
            print(f"zfuzz: last lines of {log_path}:", file=sys.stderr)
            for line in tail_of(log_path, 15).splitlines():
                print("  | " + line, file=sys.stderr)
            detail = f" (log: {log_path})"
        elif capture:
            detail = ": " + last_line(proc.stderr or proc.stdout)
        raise ZfuzzError(f"{what} failed with exit code {proc.returncode}{detail}")
    return proc


def tail_of(path, lines):
    try:
        with open(path, "rb") as f:
            data = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    return "\n".join(data[-lines:])


def last_line(text):
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()
    return ""


def which(name):
    return shutil.which(name)


class Stopwatch:
    def __init__(self):
        self.start = time.monotonic()

    def seconds(self):
        return time.monotonic() - self.start


def format_duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def parse_duration(text):
    """'90', '90s', '10m', '2h', '1h30m' -> seconds. Raises ValueError on anything else."""
    text = text.strip().lower()
    if not text:
        raise ValueError("empty duration")
    if text.isdigit():
        return int(text)
    total, number = 0, ""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    for ch in text:
        if ch.isdigit():
            number += ch
        elif ch in units and number:
            total += int(number) * units[ch]
            number = ""
        else:
            raise ValueError(f"bad duration {text!r} (use e.g. 90s, 10m, 2h)")
    if number:
        raise ValueError(f"bad duration {text!r}: a number without a unit at the end")
    if total <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    return total


def writable_dir(path, flag="--out"):
    """Creates `path` if needed and proves it writable; a one-line ZfuzzError otherwise."""
    try:
        os.makedirs(path, exist_ok=True)
        probe = os.path.join(path, ".zfuzz-probe")
        with open(probe, "w") as f:
            f.write("ok\n")
        os.unlink(probe)
    except OSError as e:
        raise ZfuzzError("%s %s: cannot write there (%s)" % (flag, path, e.strerror or e))
    return os.path.abspath(path)
