// SPDX-License-Identifier: GPL-2.0-only
// Under --config=msan: checks that the libc++ and libc++abi this process actually loaded are the
// MSan-instrumented ones built by `tools/zfuzz setup` (in $ZFUZZ_MSAN_LIBCXX, which user.bazelrc
// sets), that they really are instrumented, and that no libstdc++ is loaded. A link or a loader
// that silently picks up Debian's uninstrumented libc++ makes MSan miss bugs and report false
// positives; this test turns red with a diagnosis instead.
//
// Written against libc and the dynamic loader only (no iostream, no std::string, no gtest): with
// an uninstrumented libc++ those would themselves trip MSan before the diagnosis is printed.
//
// Under every other configuration it prints that it was skipped and passes.
#include <fcntl.h>
#include <link.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <exception>

namespace {

#if defined(__has_feature)
#if __has_feature(memory_sanitizer)
#define ZFUZZ_HAS_MSAN 1
#endif
#endif

int g_failures = 0;

void Fail(const char* what, const char* detail) {
  printf("FAIL: %s%s%s\n", what, detail[0] ? ": " : "", detail);
  ++g_failures;
}

const char* Basename(const char* path) {
  const char* slash = strrchr(path, '/');
  return slash ? slash + 1 : path;
}

struct Search {
  const char* prefix;        // file name prefix, e.g. "libc++.so"
  int count;                 // how many loaded objects matched
  char path[PATH_MAX];       // the loader's name for the first match
};

int Visit(struct dl_phdr_info* info, size_t, void* data) {
  auto* search = static_cast<Search*>(data);
  const char* name = info->dlpi_name;
  if (name == nullptr || name[0] == '\0') return 0;
  if (strncmp(Basename(name), search->prefix, strlen(search->prefix)) != 0) return 0;
  if (search->count++ == 0) snprintf(search->path, sizeof(search->path), "%s", name);
  printf("loaded: %s\n", name);
  return 0;
}

Search FindLoaded(const char* prefix) {
  Search search = {prefix, 0, {0}};
  dl_iterate_phdr(Visit, &search);
  return search;
}

bool FileContains(const char* path, const char* needle) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  struct stat st;
  bool found = false;
  if (fstat(fd, &st) == 0 && st.st_size > 0) {
    void* data = mmap(nullptr, st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (data != MAP_FAILED) {
      found = memmem(data, st.st_size, needle, strlen(needle)) != nullptr;
      munmap(data, st.st_size);
    }
  }
  close(fd);
  return found;
}

// `prefix` (libc++.so / libc++abi.so) must be loaded exactly once, from `libdir`, and instrumented.
void CheckInstrumentedFromCache(const char* prefix, const char* libdir) {
  char detail[3 * PATH_MAX];
  Search found = FindLoaded(prefix);
  if (found.count != 1) {
    snprintf(detail, sizeof(detail), "expected exactly one %s* in the process, found %d", prefix,
             found.count);
    Fail("loaded libraries", detail);
    if (found.count == 0) return;
  }
  char real[PATH_MAX];
  if (realpath(found.path, real) == nullptr) {
    Fail("cannot resolve the loaded library", found.path);
    return;
  }
  size_t n = strlen(libdir);
  if (strncmp(real, libdir, n) != 0 || real[n] != '/') {
    snprintf(detail, sizeof(detail), "%s was loaded from %s (%s), not from the MSan-instrumented "
             "build in %s", prefix, found.path, real, libdir);
    Fail("wrong library", detail);
  } else {
    printf("ok: %s loaded from %s\n", prefix, real);
  }
  // An MSan-instrumented library imports the MSan runtime's thread-local parameter shadow.
  if (!FileContains(real, "__msan_param_tls")) {
    snprintf(detail, sizeof(detail), "%s does not reference __msan_param_tls", real);
    Fail("library is not MSan-instrumented", detail);
  } else {
    printf("ok: %s is MSan-instrumented (references __msan_param_tls)\n", real);
  }
}

}  // namespace

int main() {
  setvbuf(stdout, nullptr, _IONBF, 0);
#if !defined(ZFUZZ_CHECK_MSAN_LIBCXX)
  printf("msan libc++ check skipped: not built with --config=msan\n");
  return 0;
#else
  // Keep a libc++abi symbol referenced, so the library is loaded whatever the linker's
  // --as-needed policy (the libc++ dependency comes with -stdlib=libc++ and BAZEL_LINKLIBS).
  volatile std::terminate_handler handler = std::get_terminate();
  (void)handler;

#if !defined(ZFUZZ_HAS_MSAN)
  Fail("this test was not compiled with -fsanitize=memory",
       "--define=sanitizer=msan alone selects the check; build with --config=msan");
#endif

  const char* env = getenv("ZFUZZ_MSAN_LIBCXX");
  char libdir[PATH_MAX];
  if (env == nullptr || env[0] == '\0') {
    Fail("ZFUZZ_MSAN_LIBCXX is not set",
         "user.bazelrc (written by `tools/zfuzz setup`) is missing or out of date");
  } else if (realpath(env, libdir) == nullptr) {
    Fail("ZFUZZ_MSAN_LIBCXX does not exist", env);
  } else {
    CheckInstrumentedFromCache("libc++.so", libdir);
    CheckInstrumentedFromCache("libc++abi.so", libdir);
  }

  Search libstdcxx = FindLoaded("libstdc++.so");
  if (libstdcxx.count != 0) Fail("libstdc++ (uninstrumented) is loaded", libstdcxx.path);

  if (g_failures != 0) {
    printf("msan libc++ check: %d failure(s)\n", g_failures);
    return 1;
  }
  printf("msan libc++ check: passed\n");
  return 0;
#endif
}
