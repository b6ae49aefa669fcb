#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-only
echo "remote_coverage_tools: 'bazel coverage' is not supported offline; use 'tools/zfuzz coverage'" >&2
exit 1
