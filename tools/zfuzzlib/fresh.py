# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz fresh-machine`: the README's two commands on a bare Debian 12, in a chroot.

  tools/zfuzz fresh-machine [--dir DIR] [--fuzz-time 30s] [--keep] [--rebuild-base]
                            [--skip-fuzz] [--skip-test]

A new user's machine is `debootstrap --variant=minbase bookworm` with git, python3 and
ca-certificates: no `python` command, no zip, no locales, no sudo, no compiler. The development
machines have much more, which is how a missing set-up step hides. This builds such a root (the
base is made once and cached as a tarball under ~/.cache/zfuzz/fresh-machine), clones the
current commit into it, and runs there, as root with an empty environment, exactly

  tools/zfuzz fuzz --time 30s
  tools/zfuzz test

printing each command's result and time. It needs root (chroot, mounts) and Debian's archive
(the mirror is the one this machine's apt uses). It takes about 25 minutes on 2 cores and is not
part of `.ci/run`; run it before resolving anything that touches set-up. The root is removed
afterwards (--keep leaves it, with its logs) and only ever one this command made itself.
"""
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from . import setup
from .common import (REPO_ROOT, Stopwatch, ZfuzzError, cache_dir, format_duration,
                     parse_duration, run, say, warn, which)

RELEASE = "bookworm"
BASE_PACKAGES = ["git", "python3", "ca-certificates"]
DEFAULT_DIR = "/var/tmp/zfuzz-fresh-machine"
MARKER = ".zfuzz-fresh-machine"  # in every root this command made; nothing else is removed
CLONE = "/root/zfuzz"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Mounted into the root for the run (the order in which they are mounted).
MOUNTS = [("proc", ["-t", "proc", "proc"]), ("sys", ["-t", "sysfs", "sysfs"]),
          ("dev", ["--rbind", "/dev"])]


def add_parser(sub):
    p = sub.add_parser(
        "fresh-machine",
        help="run the README's two commands in a bare Debian 12 chroot (about 25 minutes)",
        description="Builds (once, cached) a `debootstrap --variant=minbase %s` root with only "
        "%s, clones the current commit into it and runs `tools/zfuzz fuzz --time T` and then "
        "`tools/zfuzz test` there as root with an empty environment, printing both results and "
        "times. Needs root and Debian's archive." % (RELEASE, ", ".join(BASE_PACKAGES)))
    p.add_argument("--dir", default=DEFAULT_DIR,
                   help="where the root is made (default: %(default)s); must be empty, absent, "
                   "or a root this command made")
    p.add_argument("--fuzz-time", default="30s",
                   help="the campaign's --time (default: %(default)s)")
    p.add_argument("--keep", action="store_true",
                   help="leave the root (and its logs) in place afterwards")
    p.add_argument("--rebuild-base", action="store_true",
                   help="run debootstrap again instead of using the cached base tarball")
    p.add_argument("--skip-fuzz", action="store_true", help="do not run `tools/zfuzz fuzz`")
    p.add_argument("--skip-test", action="store_true", help="do not run `tools/zfuzz test`")
    p.set_defaults(func=run_fresh_machine)


# ---- pure helpers (unit-tested) -----------------------------------------------------------------

def mounts_under(root, mountinfo_text):
    """Mount points at or below `root`, deepest first, from /proc/self/mountinfo's text."""
    root = os.path.realpath(root).rstrip("/")
    points = []
    for line in mountinfo_text.splitlines():
        fields = line.split()
        if len(fields) < 5:
            continue
        # Field 5 is the mount point, with spaces and the like escaped as \\040 and friends.
        point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])
        if point == root or point.startswith(root + "/"):
            points.append(point)
    return sorted(set(points), key=lambda p: (-p.count("/"), p))


def check_root_dir(path, repo_root=REPO_ROOT):
    """The absolute root directory to use, or a one-line ZfuzzError why not."""
    path = os.path.abspath(path)
    real = os.path.realpath(path)
    repo = os.path.realpath(repo_root)
    if real in ("/", "") or real == repo or real.startswith(repo + os.sep):
        raise ZfuzzError("--dir %s: choose a directory outside the repository and not /" % path,
                         exit_code=2)
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise ZfuzzError("--dir %s: exists and is not a directory" % path, exit_code=2)
        entries = os.listdir(path)
        if entries and MARKER not in entries:
            raise ZfuzzError("--dir %s: not empty and not made by tools/zfuzz fresh-machine "
                             "(it leaves directories it did not make alone)" % path, exit_code=2)
    return path


def result_of(output, exit_code, command):
    """A one-line verdict of one command's run, from its output and exit code."""
    lines = [l.strip() for l in output.splitlines() if l.strip()]
    counts = [l for l in lines if re.fullmatch(r"\d+ passed, \d+ failed", l)]
    if command == "test":
        if counts:
            return counts[-1] + ("" if exit_code == 0 else " (exit %d)" % exit_code)
        return "exit %d, no 'N passed, N failed' line" % exit_code
    errors = [l for l in lines if l.startswith("zfuzz: error:")]
    if exit_code == 0:
        return "exit 0 (no findings)" if "no findings" in lines else "exit 0"
    if exit_code == 1 and not errors:
        return "exit 1 (new findings)"
    return "exit %d%s" % (exit_code, (": " + errors[-1][len("zfuzz: error:"):].strip())
                          if errors else "")


def chroot_argv(root, argv):
    """argv run inside `root` in the clone, as root with nothing inherited from this shell."""
    return ["chroot", root, "/usr/bin/env", "-i", "--chdir=" + CLONE, "HOME=/root",
            "PATH=" + CHROOT_PATH] + argv


# ---- the steps ----------------------------------------------------------------------------------

def base_tarball():
    return os.path.join(cache_dir(), "fresh-machine", "%s-minbase.tar.gz" % RELEASE)


def debian_stanzas():
    """The deb stanzas of this machine's Debian mirror for the release (never a fixed host)."""
    stanzas = setup.derive_src_stanzas(setup.read_apt_sources(), RELEASE, types="deb")
    if not stanzas:
        raise ZfuzzError("no Debian '%s' entry in /etc/apt to take the mirror from" % RELEASE)
    return stanzas


def make_base(tarball):
    """debootstrap a minbase root with BASE_PACKAGES, and keep it as a tarball."""
    if not which("debootstrap"):
        say("installing debootstrap (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        run(["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"], env=env,
            step="apt-get install debootstrap", capture=True)
    stanzas = debian_stanzas()
    mirror = stanzas[0]["URIs"].split()[0]
    os.makedirs(os.path.dirname(tarball), exist_ok=True)
    work = tempfile.mkdtemp(prefix="base-", dir=os.path.dirname(tarball))
    rootfs = os.path.join(work, "root")
    log = tarball + ".log"
    try:
        say("debootstrap --variant=minbase --include=%s %s from %s (log: %s)"
            % (",".join(BASE_PACKAGES), RELEASE, mirror, log))
        run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES),
             RELEASE, rootfs, mirror], step="debootstrap", log_path=log, quiet=True)
        sources = os.path.join(rootfs, "etc", "apt", "sources.list.d", "debian.sources")
        with open(sources, "w") as f:
            f.write(setup.render_deb822(stanzas, "this machine's Debian mirror"))
        legacy = os.path.join(rootfs, "etc", "apt", "sources.list")
        if os.path.exists(legacy):
            os.unlink(legacy)
        tmp = tarball + ".tmp"
        run(["tar", "--numeric-owner", "-czf", tmp, "-C", rootfs, "."], step="tar (base)",
            quiet=True)
        os.replace(tmp, tarball)
    finally:
        _remove_tree(work)
    say("base root cached: %s (%.0f MB)" % (tarball, os.path.getsize(tarball) / 1e6))


def _mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read()


def processes_in(root, proc_dir="/proc"):
    """PIDs of the processes whose root directory is `root` (a Bazel server outlives its
    command)."""
    real = os.path.realpath(root)
    pids = []
    for name in os.listdir(proc_dir):
        if not name.isdigit():
            continue
        try:
            if os.readlink(os.path.join(proc_dir, name, "root")) == real:
                pids.append(int(name))
        except OSError:
            continue
    return pids


def stop_processes_in(root):
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = processes_in(root)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        time.sleep(2)
    if processes_in(root):
        warn("processes still running in %s: %s" % (root, processes_in(root)))


def unmount_all(root):
    stop_processes_in(root)
    for point in mounts_under(root, _mountinfo()):
        subprocess.run(["umount", "-R", point], stderr=subprocess.DEVNULL)
    left = mounts_under(root, _mountinfo())
    for point in left:  # busy: detach it, so that nothing is deleted through it
        subprocess.run(["umount", "-R", "-l", point], stderr=subprocess.DEVNULL)
    left = mounts_under(root, _mountinfo())
    if left:
        raise ZfuzzError("cannot unmount %s: left in place, remove it by hand" % ", ".join(left))


def _remove_tree(path):
    """Removes a tree this command made, never through a mount point."""
    if mounts_under(path, _mountinfo()):
        raise ZfuzzError("%s still has mounts below it: not removed" % path)
    shutil.rmtree(path, ignore_errors=True)


def prepare_root(root, tarball):
    if os.path.exists(root):
        unmount_all(root)
        _remove_tree(root)
    os.makedirs(root)
    open(os.path.join(root, MARKER), "w").close()
    say("unpacking the base root into %s" % root)
    run(["tar", "--numeric-owner", "-xpzf", tarball, "-C", root], step="tar (unpack)", quiet=True)
    try:
        with open("/etc/resolv.conf") as f:
            resolv = f.read()
        with open(os.path.join(root, "etc", "resolv.conf"), "w") as f:
            f.write(resolv)
    except OSError as e:
        warn("no /etc/resolv.conf for the root (%s): apt there may not resolve" % e.strerror)


def mount_all(root):
    for name, how in MOUNTS:
        target = os.path.join(root, name)
        os.makedirs(target, exist_ok=True)
        run(["mount"] + how + [target], step="mount " + name, quiet=True)
        if name == "dev":
            run(["mount", "--make-rslave", target], step="mount --make-rslave dev", quiet=True)


def clone_into(root):
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, text=True).stdout.strip()
    if not head:
        raise ZfuzzError("%s is not a git checkout: nothing to clone" % REPO_ROOT)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                           cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True).stdout.strip()
    if dirty:
        warn("uncommitted changes are not in the clone: it tests commit %s" % head[:12])
    dest = root + CLONE
    run(["git", "clone", "--quiet", "--no-hardlinks", REPO_ROOT, dest], step="git clone",
        quiet=True)
    run(["git", "-C", dest, "checkout", "--quiet", "--detach", head], step="git checkout",
        quiet=True)
    return head


def run_in_root(root, argv, log_path):
    """Runs argv in the root, streaming its output (indented) and keeping it in log_path."""
    watch = Stopwatch()
    say("[fresh machine] $ %s (log: %s)" % (" ".join(argv), log_path))
    chunks = []
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(chroot_argv(root, argv), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        for raw in proc.stdout:
            log.write(raw)
            line = raw.decode("utf-8", "replace").rstrip("\n")
            chunks.append(line)
            print("  | " + line, flush=True)
        code = proc.wait()
    return code, "\n".join(chunks), watch.seconds()


def run_fresh_machine(args):
    if os.geteuid() != 0:
        raise ZfuzzError("fresh-machine needs root (debootstrap, chroot and mounts)")
    try:
        parse_duration(args.fuzz_time)
    except ValueError as e:
        raise ZfuzzError("--fuzz-time: %s" % e, exit_code=2)
    root = check_root_dir(args.dir)
    for tool in ("chroot", "mount", "umount", "tar", "git"):
        if not which(tool):
            raise ZfuzzError("%s not found on this machine" % tool)
    total = Stopwatch()
    tarball = base_tarball()
    if args.rebuild_base or not os.path.exists(tarball):
        make_base(tarball)
    else:
        say("base root: %s (cached; --rebuild-base makes it again)" % tarball)
    logs = os.path.join(root + ".logs")
    os.makedirs(logs, exist_ok=True)
    rows, head = [], ""
    try:
        prepare_root(root, tarball)
        head = clone_into(root)
        mount_all(root)
        say("root ready: %s, clone of %s at %s" % (root, head[:12], CLONE))
        steps = []
        if not args.skip_fuzz:
            steps.append(("fuzz", ["tools/zfuzz", "fuzz", "--time", args.fuzz_time]))
        if not args.skip_test:
            steps.append(("test", ["tools/zfuzz", "test"]))
        for name, argv in steps:
            code, output, seconds = run_in_root(root, argv, os.path.join(logs, name + ".log"))
            # Exit 1 of fuzz is a finding: on unmodified code that is a failure too.
            rows.append((" ".join(argv), result_of(output, code, name), seconds, code == 0))
    finally:
        unmount_all(root)
        if not args.keep and os.path.exists(os.path.join(root, MARKER)):
            _remove_tree(root)
    print()
    print("fresh Debian 12 (%s minbase + %s), commit %s" % (RELEASE, ", ".join(BASE_PACKAGES),
                                                         head[:12]))
    width = max([len(r[0]) for r in rows] + [7])
    print("%-*s  %-40s  %s" % (width, "command", "result", "time"))
    for command, verdict, seconds, _ in rows:
        print("%-*s  %-40s  %s" % (width, command, verdict, format_duration(seconds)))
    print("total %s; logs in %s%s" % (format_duration(total.seconds()), logs,
                                      "; root kept in " + root if args.keep else ""))
    return 0 if all(r[3] for r in rows) else 1
