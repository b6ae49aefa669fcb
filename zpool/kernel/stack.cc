// SPDX-License-Identifier: GPL-2.0-only
// Stack capture and symbolization for reports.
#include "zpool/kernel/stack.h"

#include <cxxabi.h>
#include <execinfo.h>
#include <stdio.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>

// Provided by every sanitizer runtime (sanitizer_common); absent in plain builds.
extern "C" void __sanitizer_symbolize_pc(void *pc, const char *fmt, char *out_buf,
                                         size_t out_buf_size) __attribute__((weak));

namespace kc {

StackTrace CaptureStack(const void *start_after_pc) {
  void *raw[kMaxStackDepth + 8];
  int n = backtrace(raw, kMaxStackDepth + 8);
  int first = 1;  // drop CaptureStack itself
  if (start_after_pc != nullptr) {
    for (int i = 0; i < n; i++) {
      if (raw[i] == start_after_pc) {
        first = i;
        break;
      }
    }
  }
  StackTrace trace;
  for (int i = first; i < n && trace.depth < kMaxStackDepth; i++) trace.pcs[trace.depth++] = raw[i];
  return trace;
}

namespace {

std::string Demangle(const char *symbol) {
  // backtrace_symbols format: "binary(mangled+0xoff) [0xaddr]"
  const char *open = strchr(symbol, '(');
  const char *plus = open ? strchr(open, '+') : nullptr;
  if (open == nullptr || plus == nullptr || plus == open + 1) return symbol;
  std::string mangled(open + 1, plus);
  int status = 0;
  char *demangled = abi::__cxa_demangle(mangled.c_str(), nullptr, nullptr, &status);
  if (status != 0 || demangled == nullptr) return symbol;
  std::string out = demangled;
  free(demangled);
  const char *close = strchr(plus, ')');
  out += std::string(plus, close ? close : plus + strlen(plus));
  return out;
}

}  // namespace

std::string FormatStack(const StackTrace &stack) {
  std::string out;
  char line[1024];
  if (__sanitizer_symbolize_pc != nullptr) {
    for (int i = 0; i < stack.depth; i++) {
      char sym[900];
      // Return addresses point after the call; symbolize the call instruction itself.
      void *pc = reinterpret_cast<void *>(reinterpret_cast<uintptr_t>(stack.pcs[i]) - 1);
      __sanitizer_symbolize_pc(pc, "%F %S", sym, sizeof(sym));
      snprintf(line, sizeof(line), "    #%d %p %s\n", i, stack.pcs[i], sym);
      out += line;
    }
    return out;
  }
  char **symbols = backtrace_symbols(stack.pcs, stack.depth);
  for (int i = 0; i < stack.depth; i++) {
    std::string sym = symbols ? Demangle(symbols[i]) : std::string("?");
    snprintf(line, sizeof(line), "    #%d %p in %s\n", i, stack.pcs[i], sym.c_str());
    out += line;
  }
  free(symbols);
  return out;
}

}  // namespace kc
