// SPDX-License-Identifier: GPL-2.0-only
#include <map>
#include <string>

#include "sanitizers/canary/msan_bugs.h"

namespace zfuzz_canary {

int BranchOnUninitialisedString(std::size_t size) {
  char* raw = new char[size];  // BUG: never initialised.
  std::map<std::string, std::string> table;
  table.emplace("key", std::string(raw, size));  // the uninitialised bytes travel through libc++
  delete[] raw;
  const std::string& value = table.at("key");
  int result = 0;
  if (value[size / 2] == 'x') result = 1;  // BUG: branches on an uninitialised byte.
  return result;
}

}  // namespace zfuzz_canary
