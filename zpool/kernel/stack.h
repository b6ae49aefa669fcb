// SPDX-License-Identifier: GPL-2.0-only
// Stack traces for reports (WARN, BUG, lock-order inversions).
#ifndef ZPOOL_KERNEL_STACK_H_
#define ZPOOL_KERNEL_STACK_H_

#include <cstddef>
#include <string>

namespace kc {

inline constexpr int kMaxStackDepth = 32;

struct StackTrace {
  void *pcs[kMaxStackDepth];
  int depth = 0;
};

// Captures the calling thread's stack. Frames up to and including the one that contains
// `start_after_pc` are dropped when it is found (so a report starts at the caller of a helper);
// with nullptr, only this function's own frame is dropped.
StackTrace CaptureStack(const void *start_after_pc = nullptr);

// Symbolized, one frame a line ("    #0 0x... in func file:line"). Uses the sanitizer runtime's
// symbolizer when linked with one, else the dynamic symbol table.
std::string FormatStack(const StackTrace &stack);

}  // namespace kc

#endif  // ZPOOL_KERNEL_STACK_H_
