"""Unit tests of `setup` and `test` helpers: apt source derivation, argument checking, parsing
Bazel's build events, durations."""
import json
import os
import tempfile
import unittest

from zfuzzlib import common, setup, testcmd


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


if __name__ == "__main__":
    unittest.main()
