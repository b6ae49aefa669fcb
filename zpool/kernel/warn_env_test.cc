// SPDX-License-Identifier: GPL-2.0-only
// The warning policy and hardening level come from the environment (ZPOOL_WARN,
// ZPOOL_HARDENING) when the program does not set them; bad values fall back with a message.
// Each test target runs this file with different environment values (see BUILD).
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "zpool/kernel/kernel.h"

TEST(WarnEnvironment, PolicyAndHardeningFollowTheEnvironment) {
  const char *expected_policy = getenv("EXPECTED_POLICY");
  const char *expected_hardening = getenv("EXPECTED_HARDENING");
  ASSERT_NE(expected_policy, nullptr);
  ASSERT_NE(expected_hardening, nullptr);
  kc_warn_policy policy = kc_get_warn_policy();
  const char *names[] = {"log", "record", "abort"};
  EXPECT_STREQ(names[policy], expected_policy);
  EXPECT_STREQ(kc_hardening_full() ? "full" : "cheap", expected_hardening);
}
