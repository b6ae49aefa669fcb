// SPDX-License-Identifier: GPL-2.0-only
// Tests of the WARN_ON family, BUG_ON, the warning policies and printk levels.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "zpool/kernel/kernel.h"

namespace {

std::string LastWarning() {
  char buf[1024];
  kc_last_warning(buf, sizeof(buf));
  return buf;
}

class WarnTest : public ::testing::Test {
 protected:
  void SetUp() override {
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    kc_set_warn_policy(KC_WARN_RECORD);
    kc_warn_reset();
  }
  void TearDown() override {
    kc_set_warn_policy(KC_WARN_LOG);
    kc_warn_reset();
  }
};

int WarnOnHelper(int x) {
  if (WARN_ON(x > 10)) return -EINVAL;
  return 0;
}

TEST_F(WarnTest, WarnOnEvaluatesToTheCondition) {
  EXPECT_EQ(WarnOnHelper(3), 0);
  EXPECT_EQ(kc_warn_count(), 0u);
  EXPECT_EQ(WarnOnHelper(11), -EINVAL);
  EXPECT_EQ(kc_warn_count(), 1u);
  bool value = WARN_ON(0);
  EXPECT_FALSE(value);
  int *null_ptr = nullptr;
  EXPECT_TRUE(WARN_ON(null_ptr == nullptr));
  EXPECT_EQ(kc_warn_count(), 2u);
}

TEST_F(WarnTest, ConditionIsEvaluatedExactlyOnce) {
  int calls = 0;
  auto cond = [&] { return ++calls == 1; };
  EXPECT_TRUE(WARN_ON(cond()));
  EXPECT_EQ(calls, 1);
  EXPECT_FALSE(WARN(cond(), "never printed %d", calls));
  EXPECT_EQ(calls, 2);
}

TEST_F(WarnTest, WarnFormatsTheMessageAndNamesTheSite) {
  int line = __LINE__ + 1;
  EXPECT_TRUE(WARN(true, "handle %#lx on cpu %d", 0x1230UL, 3));
  std::string text = LastWarning();
  EXPECT_NE(text.find("handle 0x1230 on cpu 3"), std::string::npos) << text;
  EXPECT_NE(text.find("zpool/kernel/warn_test.cc:" + std::to_string(line)), std::string::npos)
      << text;
  EXPECT_NE(text.find("WARNING: CPU: "), std::string::npos) << text;
  EXPECT_NE(text.find("TestBody"), std::string::npos) << "function name missing: " << text;
  WARN_ON(1 + 1 == 2);
  EXPECT_NE(LastWarning().find("WARN_ON(1 + 1 == 2)"), std::string::npos) << LastWarning();
}

TEST_F(WarnTest, LastWarningTruncatesAndTerminates) {
  WARN(true, "%s", std::string(500, 'x').c_str());
  char small[8];
  memset(small, 'z', sizeof(small));
  EXPECT_EQ(kc_last_warning(small, sizeof(small)), 7u);
  EXPECT_EQ(small[7], '\0');
  EXPECT_EQ(kc_last_warning(nullptr, 10), 0u);
  EXPECT_EQ(kc_last_warning(small, 0), 0u);
}

void OnceSite(bool fire) { WARN_ON_ONCE(fire); }
void OnceSiteWithMessage(bool fire, int n) { WARN_ONCE(fire, "once %d", n); }

TEST_F(WarnTest, OnceFiresOncePerSiteUntilReset) {
  for (int i = 0; i < 5; i++) OnceSite(true);
  EXPECT_EQ(kc_warn_count(), 1u);
  for (int i = 0; i < 5; i++) OnceSiteWithMessage(true, i);
  EXPECT_EQ(kc_warn_count(), 2u);
  EXPECT_NE(LastWarning().find("once 0"), std::string::npos);
  // Both still evaluate to the condition when suppressed.
  EXPECT_TRUE(WARN_ON_ONCE(true));
  kc_warn_reset();
  EXPECT_EQ(kc_warn_count(), 0u);
  OnceSite(true);
  OnceSite(true);
  OnceSiteWithMessage(true, 7);
  EXPECT_EQ(kc_warn_count(), 2u) << "reset re-arms every ONCE site";
  EXPECT_NE(LastWarning().find("once 7"), std::string::npos);
}

TEST_F(WarnTest, OnceDoesNotFireOnFalse) {
  OnceSite(false);
  OnceSite(true);
  EXPECT_EQ(kc_warn_count(), 1u);
}

TEST_F(WarnTest, LogPolicyPrintsReportWithStackAndCarriesOn) {
  kc_set_warn_policy(KC_WARN_LOG);
  testing::internal::CaptureStderr();
  int line = __LINE__ + 1;
  bool fired = WARN(true, "logged warning %d", 5);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_TRUE(fired);
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_NE(err.find("------------[ cut here ]------------"), std::string::npos) << err;
  EXPECT_NE(err.find("warn_test.cc:" + std::to_string(line)), std::string::npos) << err;
  EXPECT_NE(err.find("logged warning 5"), std::string::npos) << err;
  EXPECT_NE(err.find("Call Trace:"), std::string::npos) << err;
  EXPECT_NE(err.find("#0 "), std::string::npos) << err;
  EXPECT_NE(err.find("---[ end trace ]---"), std::string::npos) << err;
}

TEST_F(WarnTest, RecordPolicyIsSilentButCounts) {
  testing::internal::CaptureStderr();
  WARN(true, "silent");
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(err, "");
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_EQ(LastWarning().find("silent") == std::string::npos, false);
}

TEST_F(WarnTest, AbortPolicyAbortsWithThePinnedMessage) {
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        WARN(true, "nested-map: handle %#lx still mapped on cpu %d", 0xabcUL, 1);
      },
      "WARNING: CPU: [0-9]+ PID: [0-9]+ at zpool/kernel/warn_test.cc:[0-9]+ TestBody: "
      "nested-map: handle 0xabc still mapped on cpu 1");
  EXPECT_DEATH(
      {
        kc_set_warn_policy(KC_WARN_ABORT);
        WarnOnHelper(100);
      },
      "at zpool/kernel/warn_test.cc:[0-9]+ WarnOnHelper: WARN_ON\\(x > 10\\)");
}

TEST_F(WarnTest, AbortPolicyDoesNotAbortWhenTheConditionIsFalse) {
  kc_set_warn_policy(KC_WARN_ABORT);
  EXPECT_FALSE(WARN_ON(false));
  EXPECT_FALSE(WARN(false, "no"));
  kc_set_warn_policy(KC_WARN_RECORD);
}

void BugHelper(int v) { BUG_ON(v == 3); }

TEST_F(WarnTest, BugOnAbortsUnderEveryPolicy) {
  for (kc_warn_policy policy : {KC_WARN_LOG, KC_WARN_RECORD, KC_WARN_ABORT}) {
    EXPECT_DEATH(
        {
          kc_set_warn_policy(policy);
          BugHelper(3);
        },
        "kernel BUG at zpool/kernel/warn_test.cc:[0-9]+! BugHelper: BUG_ON\\(v == 3\\)");
  }
  BugHelper(2);  // no BUG
}

TEST_F(WarnTest, CountIsExactUnderConcurrency) {
  constexpr int kThreads = 4, kEach = 2000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++)
    threads.emplace_back([] {
      for (int i = 0; i < kEach; i++) WARN(true, "concurrent %d", i);
    });
  for (auto &t : threads) t.join();
  EXPECT_EQ(kc_warn_count(), static_cast<unsigned long>(kThreads * kEach));
}

void ConcurrentOnceSite() { WARN_ON_ONCE(true); }

TEST_F(WarnTest, OnceFiresOnceUnderConcurrency) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; t++)
    threads.emplace_back([] {
      for (int i = 0; i < 1000; i++) ConcurrentOnceSite();
    });
  for (auto &t : threads) t.join();
  EXPECT_EQ(kc_warn_count(), 1u);
}

TEST_F(WarnTest, PrintkLevelsFilterAndCount) {
  int saved = kc_get_console_loglevel();
  unsigned long errs = kc_log_count(KC_LOG_ERR), infos = kc_log_count(KC_LOG_INFO);
  kc_set_console_loglevel(KC_LOG_INFO);  // print ERR and WARNING, not INFO/DEBUG
  testing::internal::CaptureStderr();
  pr_err("error %d\n", 1);
  pr_info("info %s", "hidden");
  pr_warn("warn without newline");
  std::string err = testing::internal::GetCapturedStderr();
  kc_set_console_loglevel(saved);
  EXPECT_EQ(err, "error 1\nwarn without newline\n");
  EXPECT_EQ(kc_log_count(KC_LOG_ERR), errs + 1);
  EXPECT_EQ(kc_log_count(KC_LOG_INFO), infos + 1);
}

TEST_F(WarnTest, MightSleepWarnsOnlyInAtomicContextAndNamesTheCaller) {
  might_sleep();
  EXPECT_EQ(kc_warn_count(), 0u);
  preempt_disable();
  EXPECT_TRUE(kc_in_atomic());
  int line = __LINE__ + 1;
  might_sleep();
  preempt_enable();
  EXPECT_FALSE(kc_in_atomic());
  EXPECT_EQ(kc_warn_count(), 1u);
  std::string text = LastWarning();
  EXPECT_NE(text.find("sleeping function called from invalid context"), std::string::npos) << text;
  EXPECT_NE(text.find("warn_test.cc:" + std::to_string(line)), std::string::npos) << text;
  // The function form works too.
  void (*fn)(void) = &might_sleep;
  preempt_disable();
  fn();
  preempt_enable();
  EXPECT_EQ(kc_warn_count(), 2u);
}

TEST_F(WarnTest, UnbalancedPreemptEnableWarns) {
  preempt_enable();
  EXPECT_EQ(kc_warn_count(), 1u);
  EXPECT_EQ(preempt_count(), 0);
}

TEST(ErrPtr, RoundTripsAndClassifies) {
  void *p = ERR_PTR(-ENOMEM);
  EXPECT_TRUE(IS_ERR(p));
  EXPECT_TRUE(IS_ERR_OR_NULL(p));
  EXPECT_EQ(PTR_ERR(p), -ENOMEM);
  EXPECT_TRUE(IS_ERR_VALUE(reinterpret_cast<unsigned long>(ERR_PTR(-EINVAL))));
  EXPECT_TRUE(IS_ERR_VALUE(static_cast<unsigned long>(-MAX_ERRNO)));
  EXPECT_FALSE(IS_ERR_VALUE(static_cast<unsigned long>(-MAX_ERRNO) - 1));
  int x;
  EXPECT_FALSE(IS_ERR(&x));
  EXPECT_TRUE(IS_ERR_OR_NULL(nullptr));
  EXPECT_FALSE(IS_ERR_VALUE(0));
}

TEST(Gfp, BlockingFlags) {
  EXPECT_TRUE(gfpflags_allow_blocking(GFP_KERNEL));
  EXPECT_TRUE(gfpflags_allow_blocking(GFP_NOIO));
  EXPECT_FALSE(gfpflags_allow_blocking(GFP_ATOMIC));
  EXPECT_FALSE(gfpflags_allow_blocking(GFP_NOWAIT));
  EXPECT_EQ(PAGE_SIZE, 1UL << PAGE_SHIFT);
  EXPECT_EQ(PAGE_MASK & (PAGE_SIZE - 1), 0UL);
  EXPECT_EQ(PAGE_MASK | (PAGE_SIZE - 1), ~0UL);
}

}  // namespace
