// SPDX-License-Identifier: GPL-2.0-only
// Ordinary C++ that must run MemorySanitizer-clean: std::string, std::map, std::unordered_map,
// std::thread, std::mutex, iostreams and exceptions. Under --config=msan this only passes if the
// whole C++ runtime (libc++, libc++abi) and gtest are instrumented: with Debian's libstdc++ this
// kind of code gives false reports (std::to_string, std::string::reserve, std::map teardown).
// It runs, and must pass, under every configuration.
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

namespace {

TEST(MsanClean, String) {
  std::string s;
  s.reserve(100);
  for (int i = 0; i < 50; ++i) s += std::to_string(i * 7919);
  EXPECT_EQ(s.substr(0, 5), "07919");
  EXPECT_NE(s.find("7919"), std::string::npos);
  std::string copy = s;
  copy.append(copy);
  copy.resize(copy.size() / 3);
  copy.shrink_to_fit();
  EXPECT_LT(copy.compare(s), 0);
  EXPECT_EQ(std::stoi(s.substr(1, 4)), 7919);
}

TEST(MsanClean, Map) {
  std::map<std::string, int> m;
  for (int i = 0; i < 1000; ++i) m["key" + std::to_string(i)] = i;
  for (int i = 0; i < 1000; i += 2) m.erase("key" + std::to_string(i));
  long sum = 0;
  for (const auto& [key, value] : m) sum += value + static_cast<long>(key.size());
  EXPECT_EQ(m.size(), 500u);
  EXPECT_GT(sum, 0);
  EXPECT_EQ(m.at("key999"), 999);
}  // teardown of a std::map<std::string, int>

TEST(MsanClean, UnorderedMap) {
  std::unordered_map<std::string, std::vector<int>> um;
  for (int i = 0; i < 2000; ++i) um[std::to_string(i % 97)].push_back(i);  // forces rehashing
  EXPECT_EQ(um.size(), 97u);
  EXPECT_EQ(um.at("0").front(), 0);
  um.rehash(4096);
  um.erase("5");
  EXPECT_EQ(um.count("5"), 0u);
  EXPECT_EQ(um.at("96").size(), 2000u / 97);
}

TEST(MsanClean, ThreadsAndMutex) {
  std::mutex mu;
  std::map<int, std::string> shared;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t, &mu, &shared] {
      for (int i = 0; i < 100; ++i) {
        std::string value = "t" + std::to_string(t) + "-" + std::to_string(i);
        std::lock_guard<std::mutex> lock(mu);
        shared.emplace(t * 1000 + i, std::move(value));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(shared.size(), 400u);
  EXPECT_EQ(shared.at(3099), "t3-99");
}

TEST(MsanClean, Iostreams) {
  std::ostringstream out;
  out << "pages=" << 42 << " ratio=" << 2.5 << ' ' << std::hex << 255;
  EXPECT_EQ(out.str(), "pages=42 ratio=2.5 ff");
  std::istringstream in("17 zsmalloc 3.25\nsecond line");
  int n = 0;
  std::string word;
  double d = 0;
  in >> n >> word >> d;
  std::string line;
  std::getline(in >> std::ws, line);
  EXPECT_EQ(n, 17);
  EXPECT_EQ(word, "zsmalloc");
  EXPECT_DOUBLE_EQ(d, 3.25);
  EXPECT_EQ(line, "second line");
  std::cout << "msan_clean_test: " << out.str() << std::endl;
  std::cerr << "msan_clean_test: stderr works too" << std::endl;
}

TEST(MsanClean, Exceptions) {
  std::string what;
  try {
    throw std::runtime_error("thrown through libc++abi");
  } catch (const std::exception& e) {
    what = e.what();
  }
  EXPECT_EQ(what, "thrown through libc++abi");
}

}  // namespace
