// SPDX-License-Identifier: GPL-2.0-only
// Deliberate bugs for the ASan canaries. They live in a cc_library of their own, apart from the
// canary binaries that call them: a configuration that instruments a binary's own sources but not
// its dependencies does not catch them, and the canary turns red.
#ifndef ZFUZZ_SANITIZERS_CANARY_ASAN_BUGS_H_
#define ZFUZZ_SANITIZERS_CANARY_ASAN_BUGS_H_

#include <cstddef>

namespace zfuzz_canary {

// ASan: reads the byte just past the end of a `size`-byte heap block (heap-buffer-overflow).
int HeapOverflowRead(std::size_t size);

// ASan/LSan: allocates `count` blocks of `size` bytes and drops every pointer to them.
void LeakMemory(std::size_t size, int count);

// ASan: allocates with new[] and releases with free() (alloc-dealloc-mismatch). Only caught when
// ASan's C++ runtime (operator new/delete) is linked: see README.md, "Known gaps".
void NewArrayThenFree(std::size_t size);

}  // namespace zfuzz_canary

#endif  // ZFUZZ_SANITIZERS_CANARY_ASAN_BUGS_H_
