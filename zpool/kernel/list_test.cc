// SPDX-License-Identifier: GPL-2.0-only
// Tests of the intrusive lists.
#include <gtest/gtest.h>

#include <vector>

#include "zpool/kernel/list.h"

namespace {

struct A;
struct B;
struct Item : kc::ListNode<A>, kc::ListNode<B> {
  explicit Item(int v) : value(v) {}
  int value;
};

std::vector<int> Values(const kc::IntrusiveList<Item, A> &list) {
  std::vector<int> out;
  list.for_each([&](Item *item) { out.push_back(item->value); });
  return out;
}

TEST(IntrusiveList, PushPopRemoveAndOrder) {
  Item one(1), two(2), three(3);
  kc::IntrusiveList<Item, A> list;
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.front(), nullptr);
  list.push_back(&one);
  list.push_back(&two);
  list.push_front(&three);
  EXPECT_EQ(Values(list), (std::vector<int>{3, 1, 2}));
  EXPECT_EQ(list.size(), 3u);
  EXPECT_EQ(list.front(), &three);
  EXPECT_EQ(list.back(), &two);
  list.move_to_front(&two);
  EXPECT_EQ(Values(list), (std::vector<int>{2, 3, 1}));
  list.remove(&three);
  EXPECT_FALSE(list.contains(&three));
  EXPECT_FALSE((kc::IntrusiveList<Item, A>::is_linked(&three)));
  EXPECT_EQ(list.pop_back(), &one);
  EXPECT_EQ(list.pop_front(), &two);
  EXPECT_TRUE(list.empty());
  EXPECT_EQ(list.size(), 0u);
}

TEST(IntrusiveList, OneItemOnTwoListsAndRemovalDuringIteration) {
  std::vector<Item> items;
  items.reserve(10);
  for (int i = 0; i < 10; i++) items.emplace_back(i);
  kc::IntrusiveList<Item, A> a;
  kc::IntrusiveList<Item, B> b;
  for (auto &item : items) {
    a.push_back(&item);
    b.push_front(&item);
  }
  a.for_each([&](Item *item) {
    if (item->value % 2) a.remove(item);
  });
  EXPECT_EQ(Values(a), (std::vector<int>{0, 2, 4, 6, 8}));
  EXPECT_EQ(b.size(), 10u);
  std::vector<int> reversed;
  a.for_each_reverse([&](Item *item) { reversed.push_back(item->value); });
  EXPECT_EQ(reversed, (std::vector<int>{8, 6, 4, 2, 0}));
  while (a.pop_front()) {
  }
  while (b.pop_front()) {
  }
}

TEST(IntrusiveList, DoubleInsertIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  using List = kc::IntrusiveList<Item, A>;
  EXPECT_DEATH(
      {
        Item item(1);
        List one;
        List other;
        one.push_back(&item);
        other.push_back(&item);
      },
      "kernel BUG at .*list.h");
}

}  // namespace
