#!/bin/sh
echo "remote_coverage_tools: 'bazel coverage' is not supported offline; use 'tools/zfuzz coverage'" >&2
exit 1
