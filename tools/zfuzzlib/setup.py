# SPDX-License-Identifier: GPL-2.0-only
"""`tools/zfuzz setup`: install every Debian package, build the MSan libc++, write user.bazelrc.

Idempotent: each step checks first and does nothing when its result is already there. Each step
says what it does; a failure names the step and the cause and exits non-zero. An interrupted
libc++ build resumes (ninja is incremental; the install is only marked complete at the end).
"""
import glob
import os
import re
import shutil
import tarfile

from .common import REPO_ROOT, ZfuzzError, cache_dir, run, say, which

# Everything the project needs, from Debian 12's archive. Grouped by who needs it.
PACKAGES = [
    # clang-19 toolchain: compiler, sanitizer runtimes, libFuzzer, symbolizer, llvm-cov, lld.
    "clang-19", "libclang-rt-19-dev", "llvm-19", "lld-19",
    # AFL++ 4.04c, whose compiler wrappers are built for clang 14.
    "afl++", "clang-14", "libclang-rt-14-dev", "llvm-14",
    # Bazel 4.2.3 and the two rule sets it needs offline.
    "bazel-bootstrap", "bazel-skylib", "bazel-platforms", "default-jdk-headless",
    # Test framework sources (built inside Bazel per sanitizer) and the libc++ headers used with
    # the MSan-instrumented libc++.
    "googletest", "libc++-19-dev", "libc++abi-19-dev",
    # Building the MSan libc++ from Debian's llvm-toolchain-19 source package.
    "cmake", "ninja-build", "xz-utils", "python3",
    # Benchmarks: compressors, the allocators we compare against, Google Benchmark, charts.
    "liblz4-dev", "libzstd-dev", "libjemalloc-dev", "libmimalloc-dev", "libbenchmark-dev",
    "gnuplot-nox",
    # The kernel's own allocator files (mm/zsmalloc.c and friends, Linux 6.12 LTS) for
    # zpool/upstream: a tarball under /usr/src, installed without its recommended build tools.
    "linux-source-6.12",
]
# Installed with --no-install-recommends: only the package itself is needed.
NO_RECOMMENDS = {"linux-source-6.12"}

LLVM_SOURCE_PACKAGE = "llvm-toolchain-19"
# The parts of the LLVM source tree that a libc++/libc++abi runtimes build reads.
LIBCXX_SOURCE_DIRS = ["runtimes", "libcxx", "libcxxabi", "libunwind", "cmake", "llvm/cmake",
                      "llvm/utils", "third-party"]
USER_BAZELRC = os.path.join(REPO_ROOT, "user.bazelrc")
SRC_LIST = "/etc/apt/sources.list.d/zfuzz-deb-src.sources"


def libcxx_prefix():
    return os.path.join(cache_dir(), "libcxx-msan-19")


def libcxx_complete(prefix=None):
    prefix = prefix or libcxx_prefix()
    return (os.path.exists(os.path.join(prefix, "install", ".complete"))
            and os.path.exists(os.path.join(prefix, "install", "lib", "libc++.so"))
            and os.path.exists(os.path.join(prefix, "install", "lib", "libc++abi.so")))


def missing_packages(packages=PACKAGES):
    missing = []
    for pkg in packages:
        proc = run(["dpkg-query", "-W", "-f=${Status}", pkg], check=False, capture=True,
                   quiet=True)
        if proc.returncode != 0 or "install ok installed" not in proc.stdout:
            missing.append(pkg)
    return missing


def _privileged(argv):
    if os.geteuid() == 0:
        return argv
    if which("sudo"):
        return ["sudo", "-n"] + argv
    raise ZfuzzError("installing packages needs root (run as root or install sudo)")


def install_packages():
    missing = missing_packages()
    if not missing:
        say("step packages: all %d Debian packages are installed" % len(PACKAGES))
        return
    say("step packages: installing %s" % " ".join(missing))
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(_privileged(["apt-get", "update"]), env=env, step="step packages (apt-get update)",
        capture=True)
    plain = [p for p in missing if p not in NO_RECOMMENDS]
    bare = [p for p in missing if p in NO_RECOMMENDS]
    if plain:
        run(_privileged(["apt-get", "install", "-y"] + plain), env=env,
            step="step packages (apt-get install)", capture=True)
    if bare:
        run(_privileged(["apt-get", "install", "-y", "--no-install-recommends"] + bare), env=env,
            step="step packages (apt-get install --no-install-recommends)", capture=True)
    still = missing_packages(missing)
    if still:
        raise ZfuzzError("step packages: still missing after apt-get install: " + " ".join(still))


def codename():
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("VERSION_CODENAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    raise ZfuzzError("step deb-src: cannot read VERSION_CODENAME from /etc/os-release")


def _release_suite(suite, codename):
    return suite == codename or suite.startswith(codename + "-")


def parse_deb822(text):
    """Stanzas of a deb822 .sources file as dicts (continuation lines joined)."""
    stanzas, current, key = [], {}, None
    for raw in text.splitlines():
        if raw.startswith("#"):
            continue
        if not raw.strip():
            if current:
                stanzas.append(current)
            current, key = {}, None
            continue
        if raw[0] in " \t" and key:
            current[key] += "\n" + raw.strip()
            continue
        if ":" in raw:
            key, value = raw.split(":", 1)
            key = key.strip()
            current[key] = value.strip()
    if current:
        stanzas.append(current)
    return stanzas


def derive_src_stanzas(sources, codename, types="deb-src"):
    """Stanzas of `types` (deb-src; or deb, for a new root) mirroring the machine's own Debian
    sources (never a hard-coded host).

    `sources` maps a file name to its text; deb822 (.sources) and one-line (.list) formats are read.
    Only entries for this release's suites are copied (third-party repositories are left alone).
    """
    out = []
    for name, text in sorted(sources.items()):
        if name.endswith(".sources"):
            for st in parse_deb822(text):
                if "deb" not in st.get("Types", "").split():
                    continue
                suites = [s for s in st.get("Suites", "").split() if _release_suite(s, codename)]
                if not suites or not st.get("URIs"):
                    continue
                stanza = {"Types": types, "URIs": st["URIs"], "Suites": " ".join(suites),
                          "Components": st.get("Components", "main")}
                if "Signed-By" in st:
                    stanza["Signed-By"] = st["Signed-By"]
                out.append(stanza)
        elif name.endswith(".list"):
            for line in text.splitlines():
                m = re.match(r"^\s*deb\s+(\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s+(.*)$", line)
                if not m or not _release_suite(m.group(3), codename):
                    continue
                stanza = {"Types": types, "URIs": m.group(2), "Suites": m.group(3),
                          "Components": m.group(4).split("#")[0].strip() or "main"}
                opts = m.group(1) or ""
                sb = re.search(r"signed-by=(\S+?)[\s\]]", opts)
                if sb:
                    stanza["Signed-By"] = sb.group(1)
                out.append(stanza)
    return out


def render_deb822(stanzas, comment="source packages from this machine's own Debian mirror"):
    blocks = []
    for st in stanzas:
        blocks.append("\n".join(f"{k}: {v}" for k, v in st.items()))
    return "# Written by tools/zfuzz: %s.\n" % comment + "\n\n".join(blocks) + "\n"


def read_apt_sources(skip=()):
    """{file name: text} of this machine's apt sources (sources.list and sources.list.d/*)."""
    sources = {}
    candidates = ["/etc/apt/sources.list"] + sorted(glob.glob("/etc/apt/sources.list.d/*"))
    for path in candidates:
        if path in skip or not os.path.isfile(path):
            continue
        with open(path, errors="replace") as f:
            sources[os.path.basename(path) if path != "/etc/apt/sources.list" else "sources.list"] \
                = f.read()
    return sources


def _source_available():
    proc = run(["apt-cache", "showsrc", LLVM_SOURCE_PACKAGE], check=False, capture=True, quiet=True)
    return proc.returncode == 0 and "Package:" in proc.stdout


def ensure_deb_src():
    if _source_available():
        say("step deb-src: source package %s is known to apt" % LLVM_SOURCE_PACKAGE)
        return
    release = codename()
    stanzas = derive_src_stanzas(read_apt_sources(skip=(SRC_LIST,)), release)
    if not stanzas:
        raise ZfuzzError("step deb-src: no Debian '%s' entry in /etc/apt to derive a deb-src "
                         "entry from" % release)
    say("step deb-src: adding %s (copied from this machine's apt sources)" % SRC_LIST)
    text = render_deb822(stanzas)
    if os.geteuid() == 0:
        with open(SRC_LIST, "w") as f:
            f.write(text)
    else:
        tmp = os.path.join(cache_dir(), "zfuzz-deb-src.sources")
        os.makedirs(cache_dir(), exist_ok=True)
        with open(tmp, "w") as f:
            f.write(text)
        run(_privileged(["cp", tmp, SRC_LIST]), step="step deb-src (install list)")
    run(_privileged(["apt-get", "update"]), step="step deb-src (apt-get update)")
    if not _source_available():
        raise ZfuzzError("step deb-src: apt still does not know source package %s"
                         % LLVM_SOURCE_PACKAGE)


def _fetch_source(prefix):
    dl = os.path.join(prefix, "download")
    os.makedirs(dl, exist_ok=True)
    tarballs = glob.glob(os.path.join(dl, "%s_*.orig.tar.xz" % LLVM_SOURCE_PACKAGE))
    if tarballs and os.path.exists(os.path.join(dl, ".complete")):
        return tarballs[0]
    ensure_deb_src()
    say("step libc++ source: apt-get source --download-only %s (about 164 MB)" % LLVM_SOURCE_PACKAGE)
    run(["apt-get", "source", "--download-only", LLVM_SOURCE_PACKAGE], cwd=dl,
        step="step libc++ source (apt-get source)")
    tarballs = glob.glob(os.path.join(dl, "%s_*.orig.tar.xz" % LLVM_SOURCE_PACKAGE))
    if not tarballs:
        raise ZfuzzError("step libc++ source: no .orig.tar.xz after apt-get source")
    open(os.path.join(dl, ".complete"), "w").close()
    return tarballs[0]


# Python >= 3.11.4 refuses absolute paths and links out of the tree when asked to.
_TAR_FILTER = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def _strip_top(name):
    parts = name.split("/", 1)
    return parts[1] if len(parts) == 2 and parts[1] else None


def _extract(tarball, prefix):
    src = os.path.join(prefix, "src")
    marker = os.path.join(src, ".complete")
    if os.path.exists(marker):
        return src
    if os.path.exists(src):
        shutil.rmtree(src)  # a partial extraction of our own cache directory
    say("step libc++ extract: %s (only %s)" % (os.path.basename(tarball),
                                                ", ".join(LIBCXX_SOURCE_DIRS)))
    tmp = src + ".tmp"
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    os.makedirs(tmp)
    try:
        with tarfile.open(tarball, "r:xz") as tar:
            for member in tar:
                rel = _strip_top(member.name)
                if rel is None or not any(rel == d or rel.startswith(d + "/")
                                          for d in LIBCXX_SOURCE_DIRS):
                    continue
                member.name = rel
                if member.islnk():
                    member.linkname = _strip_top(member.linkname) or member.linkname
                tar.extract(member, tmp, set_attrs=False, **_TAR_FILTER)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise ZfuzzError("step libc++ extract: %s: %s" % (tarball, e))
    open(os.path.join(tmp, ".complete"), "w").close()
    os.rename(tmp, src)
    return src


def build_libcxx(jobs=None):
    prefix = libcxx_prefix()
    if libcxx_complete(prefix):
        say("step libc++: MSan-instrumented libc++ found in %s" % prefix)
        return prefix
    os.makedirs(prefix, exist_ok=True)
    tarball = _fetch_source(prefix)
    src = _extract(tarball, prefix)
    build = os.path.join(prefix, "build")
    install = os.path.join(prefix, "install")
    log = os.path.join(prefix, "build.log")
    say("step libc++ build: MemoryWithOrigins libc++/libc++abi (about 2 minutes on 2 cores; "
        "log: %s)" % log)
    if not os.path.exists(os.path.join(build, "build.ninja")):
        run(["cmake", "-G", "Ninja", "-S", os.path.join(src, "runtimes"), "-B", build,
             "-DLLVM_ENABLE_RUNTIMES=libcxx;libcxxabi",
             "-DLIBCXXABI_USE_LLVM_UNWINDER=OFF",
             "-DLLVM_USE_SANITIZER=MemoryWithOrigins",
             "-DCMAKE_C_COMPILER=clang-19", "-DCMAKE_CXX_COMPILER=clang++-19",
             "-DCMAKE_BUILD_TYPE=Release",
             "-DCMAKE_INSTALL_PREFIX=" + install,
             "-DLIBCXX_INCLUDE_TESTS=OFF", "-DLIBCXXABI_INCLUDE_TESTS=OFF",
             "-DLIBCXX_INCLUDE_BENCHMARKS=OFF", "-DLLVM_INCLUDE_TESTS=OFF",
             "-DLIBCXX_ENABLE_STATIC=OFF", "-DLIBCXXABI_ENABLE_STATIC=OFF"],
            step="step libc++ build (cmake)", log_path=log, quiet=True)
    ninja = ["ninja", "-C", build]
    if jobs:
        ninja += ["-j", str(jobs)]
    run(ninja + ["cxx", "cxxabi"], step="step libc++ build (ninja)", log_path=log, quiet=True)
    run(ninja + ["install-cxx", "install-cxxabi"], step="step libc++ build (install)",
        log_path=log, quiet=True)
    if not (os.path.exists(os.path.join(install, "lib", "libc++.so"))
            and os.path.exists(os.path.join(install, "lib", "libc++abi.so"))):
        raise ZfuzzError("step libc++ build: libc++.so/libc++abi.so missing after install")
    open(os.path.join(install, ".complete"), "w").close()
    say("step libc++ build: done, installed in %s" % install)
    return prefix


def user_bazelrc_text(prefix):
    lib = os.path.join(prefix, "install", "lib")
    return (
        "# Written by tools/zfuzz setup for this machine (git-ignored). Do not edit: rerun setup.\n"
        "# MSan links against the MSan-instrumented libc++/libc++abi built from Debian's\n"
        "# llvm-toolchain-19 source package (sanitizers/msan/README.md).\n"
        f"build:msan --linkopt=-L{lib}\n"
        f"build:msan --linkopt=-Wl,-rpath,{lib}\n"
        f"build:msan --test_env=ZFUZZ_MSAN_LIBCXX={lib}\n"
    )


def write_user_bazelrc(prefix):
    text = user_bazelrc_text(prefix)
    try:
        with open(USER_BAZELRC) as f:
            if f.read() == text:
                say("step bazelrc: %s is up to date" % os.path.relpath(USER_BAZELRC, REPO_ROOT))
                return
    except OSError:
        pass
    with open(USER_BAZELRC, "w") as f:
        f.write(text)
    say("step bazelrc: wrote %s" % os.path.relpath(USER_BAZELRC, REPO_ROOT))


def setup_needed():
    """What is missing, as a list of step names (empty: nothing to do)."""
    needed = []
    if missing_packages():
        needed.append("packages")
    if not libcxx_complete():
        needed.append("libc++")
    try:
        with open(USER_BAZELRC) as f:
            if f.read() != user_bazelrc_text(libcxx_prefix()):
                needed.append("bazelrc")
    except OSError:
        needed.append("bazelrc")
    return needed


def run_setup(args=None):
    install_packages()
    prefix = build_libcxx(jobs=getattr(args, "jobs", None))
    write_user_bazelrc(prefix)
    say("setup complete")
    return 0
