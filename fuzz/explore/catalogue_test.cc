// SPDX-License-Identifier: GPL-2.0-only
// The catalogue at preemption bound 2: every scenario explored completely, every execution
// linearizable and clean. Also the oracle's own checks: the sequential specification of each
// scenario is what the scenario says it is.
#include <gtest/gtest.h>

#include <string>

#include "fuzz/explore/scenario.h"

namespace {

using zfuzz::explore::Catalogue;
using zfuzz::explore::Runner;
using zfuzz::explore::Scenario;

class CatalogueTest : public testing::TestWithParam<size_t> {};

TEST_P(CatalogueTest, Bound2IsCompleteAndClean) {
  const Scenario &s = Catalogue()[GetParam()];
  Runner runner(s);
  // Every sequential order runs clean on its own (a failure there is not a race).
  for (const auto &o : runner.Sequential(0))
    ASSERT_EQ(o.state.find("sequential run failed"), std::string::npos) << o.state;
  kc::ExploreOptions options;
  options.preemption_bound = 2;
  kc::ExploreResult r = runner.Explore(options);
  EXPECT_FALSE(r.failed) << s.name << ": " << r.failure << "\n" << r.interleaving
                         << "replay: explore --replay '" << s.name << "' --schedule "
                         << r.schedule;
  EXPECT_TRUE(r.complete) << s.name;
  EXPECT_GT(r.executions, 1u) << s.name << ": nothing to interleave?";
}

std::string Name(const testing::TestParamInfo<size_t> &info) {
  std::string n = std::to_string(info.param) + "_" + Catalogue()[info.param].name;
  for (char &c : n)
    if (!isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

INSTANTIATE_TEST_SUITE_P(All, CatalogueTest, testing::Range<size_t>(0, Catalogue().size()), Name);

TEST(Catalogue, NamesAreUniqueAndEveryOperationIsCovered) {
  std::set<std::string> names;
  std::set<zfuzz::explore::OpKind> kinds;
  for (const Scenario &s : Catalogue()) {
    EXPECT_TRUE(names.insert(s.name).second) << "duplicate " << s.name;
    for (const auto &ops : s.threads)
      for (const auto &op : ops) kinds.insert(op.kind);
  }
  EXPECT_EQ(kinds.size(), 13u) << "an operation kind without a scenario";
}

}  // namespace

int main(int argc, char **argv) {
  testing::InitGoogleTest(&argc, argv);
  zfuzz::explore::InitializeExplorer();
  return RUN_ALL_TESTS();
}
