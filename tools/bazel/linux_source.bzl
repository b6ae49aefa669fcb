# SPDX-License-Identifier: GPL-2.0-only
"""@linux_source: the kernel's own allocator files, never checked in.

From Debian's linux-source-6.12 package (/usr/src/linux-source-6.12.tar.xz, installed by
`tools/zfuzz setup`), or from a kernel tree named by ZFUZZ_LINUX_SOURCE=DIR (a developer's own
patch), the rule takes only mm/zsmalloc.c, mm/zbud.c, mm/z3fold.c, mm/zpool.c,
include/linux/zsmalloc.h and include/linux/zpool.h, records the kernel version and each file's
sha256 (SOURCE.txt), and checks that every file compiles against the project's shims
(zpool/upstream/include). status.bzl says whether the upstream targets can be built:

  UPSTREAM_AVAILABLE  True when every file is there and compiles against the shims
  UPSTREAM_STATUS     one line: the version and origin, or what is wrong (the file and the first
                      kernel API the shims lack, a missing tree, a directory that is not one)
  UPSTREAM_VERSION    "6.12.118", or "" when unavailable

When unavailable the files are empty placeholders and //zpool/upstream's targets are
incompatible (skipped by `bazel test //...`): everything else keeps working, and
//zpool/upstream:source_test reports the status.
"""

FILES = [
    "mm/zsmalloc.c",
    "mm/zbud.c",
    "mm/z3fold.c",
    "mm/zpool.c",
    "include/linux/zsmalloc.h",
    "include/linux/zpool.h",
]
TARBALL = "/usr/src/linux-source-6.12.tar.xz"
TOP = "linux-source-6.12"

def _version(text):
    fields = {}
    for line in text.splitlines():
        parts = line.split("=", 1)
        if len(parts) == 2:
            fields[parts[0].strip()] = parts[1].strip()
    if "VERSION" not in fields or "PATCHLEVEL" not in fields:
        return ""
    v = fields["VERSION"] + "." + fields["PATCHLEVEL"]
    if fields.get("SUBLEVEL", ""):
        v += "." + fields["SUBLEVEL"]
    return v + fields.get("EXTRAVERSION", "")

def _first_error(text):
    """The first compiler error as "file:line: message" (file relative to the tree)."""
    for line in text.splitlines():
        for marker in (": fatal error: ", ": error: "):
            if marker not in line:
                continue
            where, what = line.split(marker, 1)
            parts = where.split(":")
            place = parts[0]
            if "/zpool/upstream/" in place:
                place = place.split("/zpool/upstream/")[-1]
            if place.startswith("./"):
                place = place[2:]
            if len(parts) > 1:
                place += ":" + parts[1]
            return "%s: %s" % (place, what.strip())
    return text.strip().splitlines()[0] if text.strip() else "unknown error"

def _impl(ctx):
    tree = ctx.os.environ.get("ZFUZZ_LINUX_SOURCE", "")
    status = ""
    version = ""
    origin = ""
    if tree:
        origin = "ZFUZZ_LINUX_SOURCE=" + tree
        root = ctx.path(tree)
        if not root.exists:
            status = "%s: no such directory" % origin
        elif not root.get_child("Makefile").exists or not root.get_child("mm").exists:
            status = "%s: not a kernel tree (no Makefile or mm/)" % origin
        else:
            for f in FILES:
                src = ctx.path(str(root) + "/" + f)
                if not src.exists:
                    status = "%s: %s missing (a kernel tree before zpool, or after zbud and z3fold were removed?)" % (origin, f)
                    break
                ctx.symlink(src, f)
            version = _version(ctx.read(root.get_child("Makefile")))
    else:
        origin = "Debian linux-source-6.12 (" + TARBALL + ")"
        if not ctx.path(TARBALL).exists:
            status = "no kernel source: %s is missing (tools/zfuzz setup installs linux-source-6.12)" % TARBALL
        else:
            members = [TOP + "/" + f for f in FILES] + [TOP + "/Makefile"]
            res = ctx.execute(["tar", "-xJf", TARBALL, "--strip-components=1"] + members,
                              timeout = 900)
            if res.return_code != 0:
                status = "%s: extraction failed: %s" % (TARBALL, res.stderr.strip())
            else:
                version = _version(ctx.read("Makefile"))
                ctx.delete("Makefile")

    if not status:
        # The shims must cover every kernel API the files use: compile each one now, so that a
        # tree that needs more (mainline, for instance) gives one clear line, not a failed build.
        shim = ctx.path(Label("//zpool/upstream:include/zfuzz_shim.h")).dirname
        renames = ctx.path(Label("//zpool/upstream:renames.h"))
        # zsmalloc.c and z3fold.c are built inside their probes (zpool/upstream/BUILD).
        probes = {
            "zsmalloc": ctx.path(Label("//zpool/upstream:zsmalloc_probe.c")),
            "z3fold": ctx.path(Label("//zpool/upstream:z3fold_probe.c")),
        }
        for f in FILES[:4]:
            unit = f.split("/")[-1][:-2]
            res = ctx.execute([
                "clang-19", "-fsyntax-only", "-std=gnu11", "-Wno-extern-initializer",
                "-ferror-limit=1", "-DKBUILD_MODNAME=\"%s\"" % unit,
                "-DZFUZZ_UPSTREAM_UNIT=" + unit, "-include", str(renames), "-I", str(shim),
                "-I", "include", "-I", ".", str(probes[unit]) if unit in probes else f,
            ], timeout = 300)
            if res.return_code != 0:
                status = "%s: %s does not compile against the shims: %s" % (
                    origin,
                    f,
                    _first_error(res.stderr),
                )
                break

    available = not status
    sums = ""
    if available:
        res = ctx.execute(["sha256sum"] + FILES)
        sums = res.stdout
        status = "Linux %s from %s" % (version, origin)
    else:
        for f in FILES:
            if not ctx.path(f).exists:
                ctx.file(f, "/* placeholder: %s */\n" % status.replace("*/", "* /"))
        version = ""

    ctx.file("SOURCE.txt", "%s\n%s" % (status, sums))
    ctx.file("status.bzl", "\n".join([
        '"""What @linux_source holds (tools/bazel/linux_source.bzl)."""',
        "UPSTREAM_AVAILABLE = %s" % available,
        "UPSTREAM_STATUS = %r" % status,
        "UPSTREAM_VERSION = %r" % version,
        "",
    ]))
    ctx.file("BUILD", "\n".join([
        "# Generated by tools/bazel/linux_source.bzl.",
        'package(default_visibility = ["//visibility:public"])',
        "exports_files(%r)" % (FILES + ["SOURCE.txt"]),
        'filegroup(name = "headers", srcs = ["include/linux/zsmalloc.h", "include/linux/zpool.h"])',
        "",
    ]))

linux_source = repository_rule(
    implementation = _impl,
    environ = ["ZFUZZ_LINUX_SOURCE"],
)
