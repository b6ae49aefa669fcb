"""`tools/zfuzz test`: the whole test suite (placeholder until written below)."""


def add_parser(sub):
    pass
