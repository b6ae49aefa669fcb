# SPDX-License-Identifier: GPL-2.0-only
"""sanitizer_canary: a test that passes only if its sanitizer catches a deliberate bug."""

# Which --define=sanitizer=... values (as //sanitizers config_settings) run each canary.
_ACTIVE_SETTINGS = {
    "asan": ["//sanitizers:asan", "//sanitizers:asan_ubsan"],
    "tsan": ["//sanitizers:tsan"],
    "msan": ["//sanitizers:msan"],
    "ubsan": ["//sanitizers:ubsan", "//sanitizers:asan_ubsan"],
}

def _pick(active, when_active, otherwise):
    branches = {setting: when_active for setting in active}
    branches["//conditions:default"] = otherwise
    return select(branches)

def sanitizer_canary(name, sanitizer, binary, patterns, size = "small", **kwargs):
    """Defines sh_test `name`, which runs `binary` and expects `sanitizer` to report `patterns`.

    Under a config whose --define=sanitizer=... selects `sanitizer` (see _ACTIVE_SETTINGS), the
    test runs //sanitizers:expect_report.sh BINARY PATTERN..., which passes only if the binary
    exited non-zero and printed every pattern. Under any other config the test runs
    //sanitizers:canary_skipped.sh, which prints "canary for <sanitizer> skipped: not built with
    --config=<sanitizer>" and passes; the test then does not depend on the binary (a wildcard
    such as //sanitizers/... still builds it, which shows it compiles under every config).

    Args:
      name: test name.
      sanitizer: one of asan, tsan, msan, ubsan.
      binary: label of the canary cc_binary.
      patterns: fixed strings that must all appear in the binary's output.
      size: test size.
      **kwargs: passed to sh_test (tags ...).
    """
    if sanitizer not in _ACTIVE_SETTINGS:
        fail("sanitizer_canary: unknown sanitizer %r" % sanitizer)
    active = _ACTIVE_SETTINGS[sanitizer]
    for pattern in patterns:
        if "'" in pattern:
            fail("sanitizer_canary: patterns cannot contain single quotes: %r" % pattern)

    # Test args are Bourne-shell tokenized: quote each pattern so it stays one argument.
    quoted = ["'%s'" % pattern for pattern in patterns]

    native.sh_test(
        name = name,
        srcs = _pick(active, ["//sanitizers:expect_report.sh"], ["//sanitizers:canary_skipped.sh"]),
        args = _pick(active, ["$(rootpath %s)" % binary] + quoted, [sanitizer]),
        data = _pick(active, [binary], []),
        size = size,
        **kwargs
    )
