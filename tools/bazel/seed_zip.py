#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-only
"""seed_zip OUT.zip FILE...: a flat zip of corpus files (OSS-Fuzz's <target>_seed_corpus.zip).

Entries are stored under their base names (the corpus names files by content SHA-1, so names
are unique), with a fixed timestamp so the zip is reproducible.
"""
import os
import sys
import zipfile


def main(argv):
    if len(argv) < 2:
        print("usage: seed_zip OUT.zip FILE...", file=sys.stderr)
        return 2
    out, files = argv[1], argv[2:]
    seen = set()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(files, key=os.path.basename):
            base = os.path.basename(path)
            if base in seen:
                print(f"seed_zip: duplicate base name {base}", file=sys.stderr)
                return 1
            seen.add(base)
            info = zipfile.ZipInfo(base, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                zf.writestr(info, f.read())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
