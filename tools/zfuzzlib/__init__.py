# SPDX-License-Identifier: GPL-2.0-only
"""The implementation of tools/zfuzz (Python 3 standard library only)."""
