// SPDX-License-Identifier: GPL-2.0-only
// Tests of module reference counting.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "zpool/kernel/kernel.h"
#include "zpool/kernel/module.h"

namespace {

TEST(Module, GetPutAndUnload) {
  static struct module mod("test_module");
  kc_set_warn_policy(KC_WARN_RECORD);
  kc_warn_reset();
  EXPECT_TRUE(try_module_get(&mod));
  EXPECT_EQ(module_refcount(&mod), 1);
  EXPECT_EQ(kc_module_unload_begin(&mod), -EBUSY) << "a module in use cannot unload";
  EXPECT_TRUE(module_is_live(&mod));
  module_put(&mod);
  EXPECT_EQ(kc_module_unload_begin(&mod), 0);
  EXPECT_FALSE(module_is_live(&mod));
  EXPECT_FALSE(try_module_get(&mod)) << "a module going away refuses new references";
  EXPECT_EQ(module_refcount(&mod), 0);
  kc_module_reload(&mod);
  EXPECT_TRUE(try_module_get(&mod));
  module_put(&mod);
  EXPECT_EQ(kc_warn_count(), 0u);
  module_put(&mod);  // one put too many
  EXPECT_EQ(kc_warn_count(), 1u);
  kc_module_reload(&mod);
  kc_set_warn_policy(KC_WARN_LOG);
  kc_warn_reset();
}

TEST(Module, NullModuleIsBuiltIn) {
  EXPECT_TRUE(try_module_get(nullptr));
  module_put(nullptr);
  EXPECT_TRUE(module_is_live(nullptr));
}

TEST(Module, GetRacingUnloadNeverBothSucceed) {
  for (int round = 0; round < 500; round++) {
    struct module mod("race");
    std::atomic<bool> go{false};
    bool got = false;
    int unload = 1;
    std::thread getter([&] {
      while (!go.load()) {
      }
      got = try_module_get(&mod);
    });
    std::thread unloader([&] {
      while (!go.load()) {
      }
      unload = kc_module_unload_begin(&mod);
    });
    go = true;
    getter.join();
    unloader.join();
    ASSERT_FALSE(got && unload == 0) << "round " << round;
    ASSERT_TRUE(got || unload == 0) << "round " << round << ": one of them must succeed";
  }
}

}  // namespace
