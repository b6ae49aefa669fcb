#!/bin/bash
# SPDX-License-Identifier: GPL-2.0-only
# ClusterFuzzLite / OSS-Fuzz entry point ($SRC/build.sh in the image): the build itself is
# tools/oss_fuzz/build.sh, which `tools/zfuzz oss-fuzz` also runs locally.
set -euo pipefail
exec "$SRC/zfuzz/tools/oss_fuzz/build.sh"
