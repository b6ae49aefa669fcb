// SPDX-License-Identifier: GPL-2.0-only
// The WARN_ON family, BUG, printk-style logging and the warning policy.
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/sched.h"
#include "zpool/kernel/percpu.h"
#include "zpool/kernel/stack.h"

namespace {

constexpr int kPolicyUnset = -1;
std::atomic<int> g_policy{kPolicyUnset};
std::atomic<unsigned long> g_warn_count{0};
std::atomic<unsigned long> g_epoch{1};  // bumped by kc_warn_reset(): re-arms every ONCE site
std::atomic<int> g_console_loglevel{7};
std::atomic<unsigned long> g_log_counts[8];

// Serialises report output (so two WARNs do not interleave) and guards the latest text.
std::mutex g_report_mu;
std::string &LastWarning() {
  static std::string *text = new std::string();  // never destroyed: usable during exit
  return *text;
}

int PolicyFromEnvironment() {
  const char *env = getenv("ZPOOL_WARN");
  if (env == nullptr || *env == '\0') return KC_WARN_LOG;
  if (strcasecmp(env, "log") == 0) return KC_WARN_LOG;
  if (strcasecmp(env, "record") == 0) return KC_WARN_RECORD;
  if (strcasecmp(env, "abort") == 0) return KC_WARN_ABORT;
  fprintf(stderr, "zpool: ZPOOL_WARN=\"%s\" is not one of log, record, abort; using log\n", env);
  return KC_WARN_LOG;
}

__attribute__((format(printf, 2, 0))) void VLog(kc_log_level level, const char *fmt, va_list ap) {
  g_log_counts[level].fetch_add(1, std::memory_order_relaxed);
  if (level >= g_console_loglevel.load(std::memory_order_relaxed)) return;
  char buf[1024];
  vsnprintf(buf, sizeof(buf), fmt, ap);
  std::lock_guard<std::mutex> guard(g_report_mu);
  fputs(buf, stderr);
  size_t n = strlen(buf);
  if (n == 0 || buf[n - 1] != '\n') fputc('\n', stderr);
}

}  // namespace

void kc_set_console_loglevel(int level) { g_console_loglevel.store(level); }
int kc_get_console_loglevel(void) { return g_console_loglevel.load(); }
unsigned long kc_log_count(enum kc_log_level level) {
  int index = static_cast<int>(level);
  return (index >= 0 && index < 8) ? g_log_counts[index].load() : 0;
}

void pr_err(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VLog(KC_LOG_ERR, fmt, ap);
  va_end(ap);
}

void pr_warn(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VLog(KC_LOG_WARNING, fmt, ap);
  va_end(ap);
}

void pr_info(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VLog(KC_LOG_INFO, fmt, ap);
  va_end(ap);
}

void pr_debug(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VLog(KC_LOG_DEBUG, fmt, ap);
  va_end(ap);
}

namespace {
std::atomic<int> g_hardening{-1};
}  // namespace

void kc_set_hardening(enum kc_hardening level) { g_hardening.store(level); }

enum kc_hardening kc_get_hardening(void) {
  int level = g_hardening.load(std::memory_order_relaxed);
  if (__builtin_expect(level >= 0, 1)) return static_cast<kc_hardening>(level);
  int from_env = KC_HARDENING_FULL;
  if (const char *env = getenv("ZPOOL_HARDENING"); env != nullptr && *env != '\0') {
    if (strcasecmp(env, "cheap") == 0) {
      from_env = KC_HARDENING_CHEAP;
    } else if (strcasecmp(env, "full") != 0) {
      fprintf(stderr, "zpool: ZPOOL_HARDENING=\"%s\" is not one of full, cheap; using full\n",
              env);
    }
  }
  g_hardening.compare_exchange_strong(level, from_env);
  return static_cast<kc_hardening>(g_hardening.load());
}

void kc_set_warn_policy(enum kc_warn_policy policy) {
  g_policy.store(static_cast<int>(policy), std::memory_order_release);
}

enum kc_warn_policy kc_get_warn_policy(void) {
  int policy = g_policy.load(std::memory_order_acquire);
  if (policy == kPolicyUnset) {
    int from_env = PolicyFromEnvironment();
    if (g_policy.compare_exchange_strong(policy, from_env)) policy = from_env;
  }
  return static_cast<kc_warn_policy>(policy);
}

unsigned long kc_warn_count(void) { return g_warn_count.load(std::memory_order_acquire); }

void kc_warn_reset(void) {
  g_warn_count.store(0, std::memory_order_release);
  g_epoch.fetch_add(1, std::memory_order_acq_rel);
  std::lock_guard<std::mutex> guard(g_report_mu);
  LastWarning().clear();
}

size_t kc_last_warning(char *buf, size_t len) {
  if (buf == nullptr || len == 0) return 0;
  std::lock_guard<std::mutex> guard(g_report_mu);
  const std::string &text = LastWarning();
  size_t n = text.size() < len - 1 ? text.size() : len - 1;
  memcpy(buf, text.data(), n);
  buf[n] = '\0';
  return n;
}

bool kc_warn_once_should_fire(struct kc_warn_once_state *site) {
  unsigned long epoch = g_epoch.load(std::memory_order_acquire);
  std::atomic_ref<unsigned long> fired(site->fired_epoch);
  return fired.exchange(epoch, std::memory_order_acq_rel) != epoch;
}

bool kc_warn_report(const char *file, int line, const char *func, const char *cond,
                    const char *fmt, ...) {
  // The stack is captured here, starting at the frame that invoked WARN*.
  const void *caller = __builtin_return_address(0);
  char message[6144];
  if (fmt != nullptr) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    size_t n = strlen(message);
    while (n > 0 && message[n - 1] == '\n') message[--n] = '\0';
  } else {
    snprintf(message, sizeof(message), "WARN_ON(%s)", cond);
  }
  char headline[6400];
  snprintf(headline, sizeof(headline), "WARNING: CPU: %d PID: %d at %s:%d %s: %s",
           kc_current_cpu(), static_cast<int>(kc::CurrentTid()), file, line, func, message);

  kc_warn_policy policy = kc_get_warn_policy();
  std::string report;
  if (policy != KC_WARN_RECORD) {
    kc::StackTrace stack = kc::CaptureStack(caller);
    report = "------------[ cut here ]------------\n";
    report += headline;
    report += "\nCall Trace:\n";
    report += kc::FormatStack(stack);
    report += "---[ end trace ]---\n";
  }
  {
    std::lock_guard<std::mutex> guard(g_report_mu);
    LastWarning() = headline;
    g_warn_count.fetch_add(1, std::memory_order_acq_rel);
    if (!report.empty()) {
      fputs(report.c_str(), stderr);
      fflush(stderr);
    }
  }
  if (policy == KC_WARN_ABORT) {
    fprintf(stderr, "zpool: aborting on WARN (policy abort)\n");
    fflush(stderr);
    kc::RunFatalHook();
    return true;
  }
  return false;
}

void kc_bug_report(const char *file, int line, const char *func, const char *cond) {
  const void *caller = __builtin_return_address(0);
  kc::StackTrace stack = kc::CaptureStack(caller);
  std::string report = "------------[ cut here ]------------\n";
  char headline[1024];
  snprintf(headline, sizeof(headline), "kernel BUG at %s:%d! %s: BUG_ON(%s) CPU: %d PID: %d",
           file, line, func, cond, kc_current_cpu(), static_cast<int>(kc::CurrentTid()));
  report += headline;
  report += "\nCall Trace:\n";
  report += kc::FormatStack(stack);
  report += "---[ end trace ]---\n";
  {
    std::lock_guard<std::mutex> guard(g_report_mu);
    fputs(report.c_str(), stderr);
    fflush(stderr);
  }
  kc::RunFatalHook();
}
