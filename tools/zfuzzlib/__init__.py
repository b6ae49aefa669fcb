"""The implementation of tools/zfuzz (Python 3 standard library only)."""
