# SPDX-License-Identifier: GPL-2.0-only
"""An encoder for libFuzzer's FuzzedDataProvider: writes the input bytes that make a harness's
ConsumeIntegralInRange / ConsumeBool / ConsumeBytes calls return chosen values.

FuzzedDataProvider reads integers from the end of the input (most significant byte first, as
many bytes as the range needs) and byte strings from the front. The encoder keeps both ends and
joins them: front + reversed(back).
"""


class Encoder:
    def __init__(self):
        self.front = bytearray()
        self.back = bytearray()  # in reading order

    def int(self, value, lo, hi):
        if not lo <= value <= hi:
            raise ValueError(f"{value} outside [{lo}, {hi}]")
        rng, offset = hi - lo, value - lo
        n = 0
        while n < 8 and (rng >> (8 * n)) > 0:
            n += 1
        for i in reversed(range(n)):
            self.back.append((offset >> (8 * i)) & 0xFF)
        return self

    def bool(self, value):
        return self.int(1 if value else 0, 0, 255)

    def bytes(self, data, max_len=None):
        """ConsumeBytes(len) where len was chosen by a preceding int() call."""
        self.front += bytes(data)
        return self

    def remaining(self, data):
        """ConsumeRemainingBytes: must be the last thing read from the front."""
        self.front += bytes(data)
        return self

    def data(self):
        return bytes(self.front) + bytes(reversed(self.back))
