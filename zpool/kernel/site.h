// SPDX-License-Identifier: GPL-2.0-only
// kc::Site: the source location of a call, taken at the caller as std::source_location is, but
// from the __builtin_FILE/LINE/FUNCTION builtins, which clang 14 (the AFL++ toolchain) has too.
// Use as a defaulted parameter: `void f(const kc::Site &site = kc::Site::current())` names the
// line that called f.
#ifndef ZPOOL_KERNEL_SITE_H_
#define ZPOOL_KERNEL_SITE_H_

namespace kc {

class Site {
 public:
  constexpr Site() = default;
  static constexpr Site current(const char *file = __builtin_FILE(),
                                const char *function = __builtin_FUNCTION(),
                                unsigned line = __builtin_LINE()) {
    return Site(file, function, line);
  }
  // A site named explicitly (a C caller's __FILE__, __func__, __LINE__).
  static constexpr Site At(const char *file, const char *function, unsigned line) {
    return Site(file, function, line);
  }
  constexpr const char *file_name() const { return file_; }
  constexpr const char *function_name() const { return function_; }
  constexpr unsigned line() const { return line_; }

 private:
  constexpr Site(const char *file, const char *function, unsigned line)
      : file_(file), function_(function), line_(line) {}
  const char *file_ = "";
  const char *function_ = "";
  unsigned line_ = 0;
};

}  // namespace kc

#endif  // ZPOOL_KERNEL_SITE_H_
