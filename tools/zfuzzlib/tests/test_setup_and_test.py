# SPDX-License-Identifier: GPL-2.0-only
"""Unit tests of `setup` and `test` helpers: apt source derivation, argument checking, parsing
Bazel's build events, durations."""
import json
import os
import tempfile
import unittest

from zfuzzlib import common, fresh, setup, testcmd


class DebSrcTest(unittest.TestCase):
    def test_deb822_release_stanzas_become_deb_src(self):
        sources = {
            "debian.sources": (
                "Types: deb\n"
                "# http://snapshot.debian.org/archive/debian/20250520T000000Z\n"
                "URIs: http://deb.debian.org/debian\n"
                "Suites: bookworm bookworm-updates\n"
                "Components: main\n"
                "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
                "\n"
                "Types: deb\n"
                "URIs: http://deb.debian.org/debian-security\n"
                "Suites: bookworm-security\n"
                "Components: main\n"),
            "nodesource.sources": (
                "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n"
                "Components: main\n"),
        }
        stanzas = setup.derive_src_stanzas(sources, "bookworm")
        self.assertEqual(len(stanzas), 2)
        self.assertEqual(stanzas[0]["Types"], "deb-src")
        self.assertEqual(stanzas[0]["URIs"], "http://deb.debian.org/debian")
        self.assertEqual(stanzas[0]["Suites"], "bookworm bookworm-updates")
        self.assertEqual(stanzas[0]["Signed-By"],
                         "/usr/share/keyrings/debian-archive-keyring.gpg")
        self.assertEqual(stanzas[1]["Suites"], "bookworm-security")
        text = setup.render_deb822(stanzas)
        self.assertIn("Types: deb-src\nURIs: http://deb.debian.org/debian\n", text)
        self.assertNotIn("nodesource", text)

    def test_one_line_format_and_third_party_suites(self):
        sources = {
            "sources.list": (
                "deb [signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n"
                "deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main\n"
                "# deb http://old bookworm main\n"),
        }
        stanzas = setup.derive_src_stanzas(sources, "bookworm")
        self.assertEqual(len(stanzas), 1)
        self.assertEqual(stanzas[0]["URIs"], "http://mirror.example/debian")
        self.assertEqual(stanzas[0]["Components"], "main contrib")
        self.assertEqual(stanzas[0]["Signed-By"], "/k.gpg")

    def test_nothing_to_derive(self):
        self.assertEqual(setup.derive_src_stanzas({"x.sources": "Types: deb-src\n"}, "bookworm"),
                         [])

    def test_user_bazelrc_points_at_the_cache(self):
        text = setup.user_bazelrc_text("/cache/libcxx")
        self.assertIn("build:msan --linkopt=-L/cache/libcxx/install/lib", text)
        self.assertIn("-Wl,-rpath,/cache/libcxx/install/lib", text)


class InstallPackagesTest(unittest.TestCase):
    def test_the_kernel_source_comes_without_its_recommends(self):
        calls = []
        installed = set()

        def fake_run(argv, **kwargs):
            calls.append(argv)
            if "install" in argv:
                installed.update(a for a in argv if not a.startswith("-") and a not in
                                 ("apt-get", "install", "sudo"))

        def fake_missing(packages=setup.PACKAGES):
            return [p for p in packages if p not in installed]

        saved = setup.run, setup.missing_packages, setup.os.geteuid
        setup.run, setup.missing_packages, setup.os.geteuid = fake_run, fake_missing, lambda: 0
        try:
            setup.install_packages()
        finally:
            setup.run, setup.missing_packages, setup.os.geteuid = saved
        installs = [argv for argv in calls if "install" in argv]
        self.assertEqual(len(installs), 2)
        plain, bare = installs
        self.assertNotIn("linux-source-6.12", plain)
        self.assertNotIn("--no-install-recommends", plain)
        self.assertEqual(bare[-2:], ["--no-install-recommends", "linux-source-6.12"])
        self.assertIn("clang-19", plain)


class ConfigArgumentTest(unittest.TestCase):
    def test_known_configs(self):
        self.assertEqual(testcmd.parse_configs("asan, tsan"), ["asan", "tsan"])

    def test_unknown_config_is_a_one_line_error(self):
        with self.assertRaises(common.ZfuzzError) as ctx:
            testcmd.parse_configs("asan,hwasan")
        self.assertIn("unknown config 'hwasan'", str(ctx.exception))
        self.assertEqual(ctx.exception.exit_code, 2)
        with self.assertRaises(common.ZfuzzError):
            testcmd.parse_configs(" , ")


class StageFlagsTest(unittest.TestCase):
    ALL = ["asan", "ubsan", "tsan", "msan"]

    def test_ubsan_builds_everything_and_variants_run_under_asan_and_ubsan(self):
        variants = testcmd.parse_variants("asan,ubsan", self.ALL)
        self.assertEqual(testcmd.stage_flags("ubsan", self.ALL, variants), [])
        self.assertEqual(testcmd.stage_flags("asan", self.ALL, variants), ["--build_tests_only"])
        self.assertEqual(testcmd.stage_flags("msan", self.ALL, variants),
                         ["--build_tests_only", "--test_tag_filters=-zfuzz_variant"])

    def test_without_ubsan_the_first_config_builds_everything(self):
        self.assertEqual(testcmd.stage_flags("tsan", ["tsan", "msan"], ["tsan", "msan"]), [])
        self.assertEqual(testcmd.stage_flags("msan", ["tsan", "msan"], ["tsan", "msan"]),
                         ["--build_tests_only"])

    def test_the_unchecked_build_runs_the_library_tests_only_and_never_builds_everything(self):
        every = testcmd.DEFAULT_CONFIGS
        self.assertIn("opt-unchecked", every)
        variants = testcmd.parse_variants("asan,ubsan", every)
        self.assertEqual(testcmd.stage_flags("opt-unchecked", every, variants),
                         ["--build_tests_only", "--test_tag_filters=-zfuzz_variant"])
        self.assertEqual(testcmd.stage_flags("ubsan", every, variants), [])
        # Listed first, it still leaves the full build to a checked config.
        self.assertEqual(testcmd.stage_flags("tsan", ["opt-unchecked", "tsan"], []),
                         ["--test_tag_filters=-zfuzz_variant"])
        self.assertEqual(testcmd.stage_targets("opt-unchecked", "//..."), "//zpool/...")
        self.assertEqual(testcmd.stage_targets("opt-unchecked", "//zpool:zbud_test"),
                         "//zpool:zbud_test")
        self.assertEqual(testcmd.stage_targets("asan", "//..."), "//...")

    def test_output_directories_follow_the_compilation_mode(self):
        self.assertEqual(testcmd.output_dir("asan"), "k8-fastbuildasan")
        self.assertEqual(testcmd.output_dir("opt-unchecked"), "k8-optopt-unchecked")

    def test_variants_all_and_bad_names(self):
        self.assertEqual(testcmd.parse_variants("all", ["tsan"]), ["tsan"])
        self.assertEqual(testcmd.parse_variants("", self.ALL), [])
        with self.assertRaises(common.ZfuzzError) as ctx:
            testcmd.parse_variants("asan,ps16", self.ALL)
        self.assertIn("--variants: unknown config 'ps16'", str(ctx.exception))
        self.assertEqual(ctx.exception.exit_code, 2)


class BepTest(unittest.TestCase):
    def write(self, events):
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            for e in events:
                f.write(json.dumps(e) + "\n")
        self.addCleanup(os.unlink, path)
        return path

    def test_statuses_and_broken_targets(self):
        path = self.write([
            {"id": {"testSummary": {"label": "//a:t1"}},
             "testSummary": {"overallStatus": "PASSED"}},
            {"id": {"testSummary": {"label": "//a:t2"}},
             "testSummary": {"overallStatus": "FAILED"}},
            {"id": {"targetCompleted": {"label": "//b:t3"}}, "completed": {"success": False}},
            # What Bazel really writes for a failed build: proto3 JSON omits `success: false`.
            {"id": {"targetCompleted": {"label": "//b:t5"}},
             "completed": {"failureDetail": {"message": "C++ compilation failed"}}},
            {"id": {"targetCompleted": {"label": "//b:ok"}}, "completed": {"success": True}},
            {"id": {"targetCompleted": {"label": "//b:engine"}},
             "aborted": {"reason": "SKIPPED", "description": "incompatible"}},
            {"id": {"targetCompleted": {"label": "//b:t4"}},
             "aborted": {"reason": "ANALYSIS_FAILURE"}},
            {"id": {"buildFinished": {}}, "finished": {"exitCode": {"code": 3}}},
        ])
        results, build_ok, broken = testcmd.read_bep(path)
        self.assertEqual(results, {"//a:t1": "PASSED", "//a:t2": "FAILED"})
        self.assertFalse(build_ok)
        self.assertEqual(broken, ["//b:t3", "//b:t5", "//b:t4"])

    def test_corrupt_file_is_a_clear_error(self):
        fd, path = tempfile.mkstemp()
        with os.fdopen(fd, "w") as f:
            f.write("{not json\n")
        self.addCleanup(os.unlink, path)
        with self.assertRaises(common.ZfuzzError):
            testcmd.read_bep(path)


class DurationTest(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(common.parse_duration("90"), 90)
        self.assertEqual(common.parse_duration("90s"), 90)
        self.assertEqual(common.parse_duration("10m"), 600)
        self.assertEqual(common.parse_duration("1h30m"), 5400)
        for bad in ["", "10x", "m", "1h30", "0s", "-5"]:
            with self.assertRaises(ValueError, msg=bad):
                common.parse_duration(bad)

    def test_format(self):
        self.assertEqual(common.format_duration(5), "5s")
        self.assertEqual(common.format_duration(125), "2m05s")
        self.assertEqual(common.format_duration(3700), "1h01m")


class RunTest(unittest.TestCase):
    def test_commands_are_argument_lists(self):
        with self.assertRaises(AssertionError):
            common.run("echo hi", quiet=True)

    def test_failure_names_the_step(self):
        with self.assertRaises(common.ZfuzzError) as ctx:
            common.run(["false"], step="step demo", quiet=True, capture=True)
        self.assertIn("step demo failed with exit code 1", str(ctx.exception))

    def test_missing_command(self):
        with self.assertRaises(common.ZfuzzError) as ctx:
            common.run(["/nonexistent/zfuzz-tool"], step="step x", quiet=True)
        self.assertIn("command not found", str(ctx.exception))


class FreshMachineTest(unittest.TestCase):
    MOUNTINFO = (
        "22 1 8:1 / / rw,relatime - ext4 /dev/vda rw\n"
        "40 22 0:5 / /var/tmp/fm/proc rw - proc proc rw\n"
        "41 22 0:6 / /var/tmp/fm/dev rw - devtmpfs udev rw\n"
        "42 41 0:7 / /var/tmp/fm/dev/pts rw - devpts devpts rw\n"
        "43 22 0:8 / /var/tmp/fm2/proc rw - proc proc rw\n"
        "44 22 0:9 / /var/tmp/fm/with\\040space rw - tmpfs tmpfs rw\n")

    def test_mounts_under_a_root_deepest_first(self):
        self.assertEqual(fresh.mounts_under("/var/tmp/fm", self.MOUNTINFO),
                         ["/var/tmp/fm/dev/pts", "/var/tmp/fm/dev", "/var/tmp/fm/proc",
                          "/var/tmp/fm/with space"])
        self.assertEqual(fresh.mounts_under("/var/tmp/other", self.MOUNTINFO), [])

    def test_root_dir_is_ours_or_empty(self):
        with tempfile.TemporaryDirectory() as d:
            repo = os.path.join(d, "repo")
            os.makedirs(repo)
            for bad in ("/", repo, os.path.join(repo, "x")):
                with self.assertRaises(common.ZfuzzError, msg=bad) as ctx:
                    fresh.check_root_dir(bad, repo_root=repo)
                self.assertEqual(ctx.exception.exit_code, 2)
            absent = os.path.join(d, "absent")
            self.assertEqual(fresh.check_root_dir(absent, repo_root=repo), absent)
            theirs = os.path.join(d, "theirs")
            os.makedirs(theirs)
            open(os.path.join(theirs, "data"), "w").close()
            with self.assertRaises(common.ZfuzzError) as ctx:
                fresh.check_root_dir(theirs, repo_root=repo)
            self.assertIn("not made by tools/zfuzz fresh-machine", str(ctx.exception))
            open(os.path.join(theirs, fresh.MARKER), "w").close()
            self.assertEqual(fresh.check_root_dir(theirs, repo_root=repo), theirs)
            a_file = os.path.join(d, "file")
            open(a_file, "w").close()
            with self.assertRaises(common.ZfuzzError):
                fresh.check_root_dir(a_file, repo_root=repo)

    def test_verdicts(self):
        self.assertEqual(fresh.result_of("x\n293 passed, 0 failed\n", 0, "test"),
                         "293 passed, 0 failed")
        self.assertEqual(fresh.result_of("293 passed, 7 failed\n", 1, "test"),
                         "293 passed, 7 failed (exit 1)")
        self.assertEqual(fresh.result_of("zfuzz: error: bazel build failed\n", 1, "test"),
                         "exit 1, no 'N passed, N failed' line")
        self.assertEqual(fresh.result_of("\nno findings\n", 0, "fuzz"), "exit 0 (no findings)")
        self.assertEqual(fresh.result_of("findings (one ...)\n", 1, "fuzz"),
                         "exit 1 (new findings)")
        self.assertEqual(fresh.result_of("zfuzz: error: bazel build of x failed\n", 1, "fuzz"),
                         "exit 1: bazel build of x failed")

    def test_commands_run_with_an_empty_environment_in_the_clone(self):
        argv = fresh.chroot_argv("/r", ["tools/zfuzz", "test"])
        self.assertEqual(argv[:4], ["chroot", "/r", "/usr/bin/env", "-i"])
        self.assertIn("--chdir=" + fresh.CLONE, argv)
        self.assertEqual(argv[-2:], ["tools/zfuzz", "test"])
        self.assertFalse(any(a.startswith(("LANG=", "PYTHON")) for a in argv))

    def test_processes_in_a_root(self):
        with tempfile.TemporaryDirectory() as d:
            root = os.path.join(d, "root")
            os.makedirs(root)
            for pid, where in (("10", root), ("11", "/"), ("12", root + "x")):
                os.makedirs(os.path.join(d, "proc", pid))
                os.symlink(where, os.path.join(d, "proc", pid, "root"))
            os.makedirs(os.path.join(d, "proc", "self"))
            self.assertEqual(fresh.processes_in(root, proc_dir=os.path.join(d, "proc")), [10])

    def test_mirror_stanzas_are_deb(self):
        sources = {"debian.sources": "Types: deb\nURIs: http://m/debian\nSuites: bookworm\n"
                                     "Components: main\n"}
        stanzas = setup.derive_src_stanzas(sources, "bookworm", types="deb")
        self.assertEqual(stanzas[0]["Types"], "deb")
        self.assertIn("Written by tools/zfuzz: mirror.",
                      setup.render_deb822(stanzas, "mirror"))

    def test_needs_root_and_a_valid_time(self):
        from zfuzzlib import cli
        parser = cli._build_parser()
        args = parser.parse_args(["fresh-machine", "--fuzz-time", "soon"])
        real = os.geteuid
        try:
            os.geteuid = lambda: 1000
            with self.assertRaises(common.ZfuzzError) as ctx:
                fresh.run_fresh_machine(args)
            self.assertIn("needs root", str(ctx.exception))
            os.geteuid = lambda: 0
            with self.assertRaises(common.ZfuzzError) as ctx:
                fresh.run_fresh_machine(args)
            self.assertIn("--fuzz-time", str(ctx.exception))
        finally:
            os.geteuid = real


class LicenceTest(unittest.TestCase):
    """The project is GPL-2.0-only: LICENSE at the root, an SPDX line at the top of every source
    and build file (the shims could one day go to the kernel's tools/testing)."""
    SOURCE_SUFFIXES = (".cc", ".h", ".c", ".py", ".sh", ".bzl", ".bazelrc")
    SOURCE_NAMES = ("BUILD", "WORKSPACE", "Dockerfile", "run", "zfuzz")

    def test_every_source_file_has_an_spdx_line(self):
        import subprocess
        proc = subprocess.run(["git", "ls-files"], cwd=common.REPO_ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True)
        if proc.returncode != 0:
            self.skipTest("not a git checkout")
        missing = []
        for path in proc.stdout.split():
            name = os.path.basename(path)
            if not (name.endswith(self.SOURCE_SUFFIXES) or name in self.SOURCE_NAMES):
                continue
            full = os.path.join(common.REPO_ROOT, path)
            if not os.path.exists(full):
                continue  # deleted in the work tree, not yet committed
            with open(full, errors="replace") as f:
                head = [f.readline() for _ in range(2)]
            if not any("SPDX-License-Identifier: GPL-2.0-only" in line for line in head):
                missing.append(path)
        self.assertEqual(missing, [], "files without an SPDX line in their first two lines")
        with open(os.path.join(common.REPO_ROOT, "LICENSE")) as f:
            self.assertIn("GNU GENERAL PUBLIC LICENSE", f.readline())


if __name__ == "__main__":
    unittest.main()
