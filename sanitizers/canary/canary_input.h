// SPDX-License-Identifier: GPL-2.0-only
// Inputs of the sanitizer canaries. Every size, index and operand of a deliberate bug comes from
// argv or from a volatile default, so the optimizer (-O1 in the sanitizer configs) cannot prove
// the bug and fold or delete it.
#ifndef ZFUZZ_SANITIZERS_CANARY_CANARY_INPUT_H_
#define ZFUZZ_SANITIZERS_CANARY_CANARY_INPUT_H_

#include <cstdlib>

namespace zfuzz_canary {

// argv[index] as a number if given, else `fallback` read back through a volatile.
inline long Arg(int argc, char** argv, int index, long fallback) {
  volatile long value = fallback;
  if (index < argc) value = std::strtol(argv[index], nullptr, 0);
  return value;
}

}  // namespace zfuzz_canary

#endif  // ZFUZZ_SANITIZERS_CANARY_CANARY_INPUT_H_
