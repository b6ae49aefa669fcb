// SPDX-License-Identifier: GPL-2.0-only
// The replay engine: a plain main that feeds files and directories to LLVMFuzzerTestOneInput.
//
// Regression tests link it, so `bazel test` replays every corpus in every sanitizer config
// without a fuzzing engine. Usage:
//   <target> [-min_inputs=N] [-repeat=N] [-skip_missing=1] [-verbose=1] PATH...
// Each PATH is a file or a directory (its regular files, recursively, in sorted order; hidden
// files skipped). With -skip_missing=1 a PATH that does not exist is skipped (an empty
// regressions directory is not in the runfiles), otherwise it is an error.
// Other -flag=value arguments (libFuzzer's) are accepted and ignored, so the same command lines
// work with both binaries. Exit 0 after replaying everything; 2 on a bad argument, a missing
// path or fewer inputs than -min_inputs; a crash is the harness's own (sanitizer report).
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
extern "C" int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

namespace {

bool g_skip_missing = false;

bool CollectFiles(const std::string &path, std::vector<std::string> *out) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    if (g_skip_missing) {
      fprintf(stderr, "replay: %s: absent, skipped\n", path.c_str());
      return true;
    }
    fprintf(stderr, "replay: %s: no such file or directory\n", path.c_str());
    return false;
  }
  if (S_ISREG(st.st_mode)) {
    out->push_back(path);
    return true;
  }
  if (!S_ISDIR(st.st_mode)) {
    fprintf(stderr, "replay: %s: not a file or directory\n", path.c_str());
    return false;
  }
  DIR *dir = opendir(path.c_str());
  if (dir == nullptr) {
    fprintf(stderr, "replay: %s: cannot open directory\n", path.c_str());
    return false;
  }
  std::vector<std::string> entries;
  while (struct dirent *entry = readdir(dir)) {
    if (entry->d_name[0] == '.') continue;  // ., .., hidden files (editor droppings)
    entries.push_back(path + "/" + entry->d_name);
  }
  closedir(dir);
  std::sort(entries.begin(), entries.end());
  for (const std::string &entry : entries)
    if (!CollectFiles(entry, out)) return false;
  return true;
}

bool ReadFile(const std::string &path, std::vector<uint8_t> *data) {
  FILE *f = fopen(path.c_str(), "rb");
  if (f == nullptr) {
    fprintf(stderr, "replay: %s: cannot open\n", path.c_str());
    return false;
  }
  data->clear();
  uint8_t buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), f)) > 0) data->insert(data->end(), buf, buf + n);
  bool ok = !ferror(f);
  fclose(f);
  if (!ok) fprintf(stderr, "replay: %s: read error\n", path.c_str());
  return ok;
}

bool ParseCount(const char *arg, const char *name, long *value) {
  size_t len = strlen(name);
  if (strncmp(arg, name, len) != 0 || arg[len] != '=') return false;
  char *end = nullptr;
  long v = strtol(arg + len + 1, &end, 10);
  if (end == arg + len + 1 || *end != '\0' || v < 0) {
    fprintf(stderr, "replay: bad value in %s\n", arg);
    exit(2);
  }
  *value = v;
  return true;
}

}  // namespace

int main(int argc, char **argv) {
  if (LLVMFuzzerInitialize != nullptr) LLVMFuzzerInitialize(&argc, &argv);
  long min_inputs = 0, repeat = 1, verbose = 0, skip_missing = 0;
  std::vector<std::string> paths;
  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    if (arg[0] == '-') {
      if (ParseCount(arg, "-min_inputs", &min_inputs) || ParseCount(arg, "-repeat", &repeat) ||
          ParseCount(arg, "-verbose", &verbose) || ParseCount(arg, "-skip_missing", &skip_missing))
        continue;
      if (strchr(arg, '=') == nullptr) {
        fprintf(stderr, "replay: unknown option %s (expected -name=value or a path)\n", arg);
        return 2;
      }
      continue;  // a libFuzzer option: accepted, ignored
    }
    paths.push_back(arg);
  }
  g_skip_missing = skip_missing != 0;
  std::vector<std::string> files;
  for (const std::string &path : paths)
    if (!CollectFiles(path, &files)) return 2;
  if (static_cast<long>(files.size()) < min_inputs) {
    fprintf(stderr, "replay: %zu inputs found, at least %ld expected (empty corpus?)\n",
            files.size(), min_inputs);
    return 2;
  }
  std::vector<uint8_t> data;
  for (const std::string &file : files) {
    if (!ReadFile(file, &data)) return 2;
    for (long r = 0; r < repeat; r++) {
      if (verbose) fprintf(stderr, "replay: running %s (%zu bytes)\n", file.c_str(), data.size());
      // A copy of exactly the input's size, so an overread is a sanitizer report.
      std::vector<uint8_t> copy(data);
      LLVMFuzzerTestOneInput(copy.empty() ? nullptr : copy.data(), copy.size());
    }
  }
  fprintf(stderr, "replay: %zu inputs replayed%s\n", files.size(),
          repeat > 1 ? " (each repeatedly)" : "");
  return 0;
}
