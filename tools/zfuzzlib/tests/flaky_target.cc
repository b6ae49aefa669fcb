// SPDX-License-Identifier: GPL-2.0-only
// A libFuzzer target that fails only once, like a free-running race: an input starting with
// "BUG" hits a BUG_ON the first time, and never again once the file named by $FLAKY_MARKER
// exists (the target creates it as it fails). Without $FLAKY_MARKER it fails every time.
// Built by test_fuzz_tools.py with clang++-19 -fsanitize=fuzzer,address.
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

// Checks a list node the way zpool/kernel/list.h's remove() does, and fails like it.
__attribute__((noinline)) void remove_node(bool linked) {
  if (!linked) {
    std::fprintf(stderr,
                 "------------[ cut here ]------------\n"
                 "kernel BUG at ./zpool/kernel/list.h:50! remove: BUG_ON(!n->linked())\n");
    std::abort();
  }
}

bool first_time() {
  const char *marker = std::getenv("FLAKY_MARKER");
  if (marker == nullptr) return true;
  int fd = open(marker, O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd < 0) return false;
  close(fd);
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size >= 3 && std::memcmp(data, "BUG", 3) == 0) remove_node(!first_time());
  return 0;
}
