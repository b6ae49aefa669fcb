# SPDX-License-Identifier: GPL-2.0-only
"""Command-line entry point: argparse subcommands, one-line errors, exit codes."""
import argparse
import sys

from .common import ZfuzzError


class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the subcommand, exit 2 (subparsers inherit the class)."""

    def error(self, message):
        print("zfuzz: error: %s: %s (see %s --help)" % (self.prog, message, self.prog),
              file=sys.stderr)
        sys.exit(2)


def _build_parser():
    parser = OneLineParser(
        prog="tools/zfuzz",
        description="Set up, test, fuzz, reproduce and measure zfuzz's allocators.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    from . import (bench, corpus, coverage, explain, explorer, fresh, fuzz, ossfuzz, repro, setup,
                   testcmd)

    p = sub.add_parser(
        "setup", help="install every Debian package, build the MSan libc++, write user.bazelrc",
        description="Idempotent machine set-up: apt-get installs what is missing, the "
        "MSan-instrumented libc++ is built from Debian's llvm-toolchain-19 source package into "
        "~/.cache/zfuzz when missing, and user.bazelrc tells Bazel where it is.")
    p.add_argument("--jobs", type=int, default=None,
                   help="parallel jobs for the libc++ build (default: ninja's choice)")
    p.set_defaults(func=setup.run_setup)

    testcmd.add_parser(sub)
    fuzz.add_parser(sub)
    repro.add_parser(sub)
    explain.add_parser(sub)
    corpus.add_parser(sub)
    coverage.add_parser(sub)
    ossfuzz.add_parser(sub)
    bench.add_parser(sub)
    explorer.add_parser(sub)
    fresh.add_parser(sub)
    return parser


def main(argv):
    parser = _build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args) or 0
    except ZfuzzError as e:
        print(f"zfuzz: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("zfuzz: interrupted", file=sys.stderr)
        return 130
