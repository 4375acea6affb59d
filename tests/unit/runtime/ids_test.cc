#include "runtime/ids.h"

#include <set>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"

namespace podgate::runtime {
namespace {

bool IsLowerHex(const std::string& s) {
  for (char c : s) {
    if (!absl::ascii_isdigit(c) && (c < 'a' || c > 'f')) {
      return false;
    }
  }
  return true;
}

TEST(IdsTest, ARandomIdIs32LowerHexDigitsAndDoesNotRepeat) {
  std::set<std::string> seen;
  for (int i = 0; i < 10000; ++i) {
    const std::string id = RandomId();
    ASSERT_EQ(id.size(), 32u) << id;
    ASSERT_TRUE(IsLowerHex(id)) << id;
    ASSERT_TRUE(seen.insert(id).second) << "repeated: " << id;
  }
}

TEST(IdsTest, AnEventIdStartsWithItsMillisecondAndSortsByTime) {
  const absl::Time t = absl::FromUnixMillis(1795000000123);
  const std::string id = EventIdAt(t);
  ASSERT_EQ(id.size(), 32u) << id;
  EXPECT_TRUE(IsLowerHex(id)) << id;
  // 1795000000123 ms = 0x01a1ee565e7b.
  EXPECT_EQ(id.substr(0, 12), "01a1ee565e7b");
  // A later millisecond sorts after, whatever the random part; the same millisecond shares the
  // prefix and differs in the rest.
  for (int i = 0; i < 1000; ++i) {
    EXPECT_LT(EventIdAt(t), EventIdAt(t + absl::Milliseconds(1)));
  }
  const std::string a = EventIdAt(t);
  const std::string b = EventIdAt(t);
  EXPECT_EQ(a.substr(0, 12), b.substr(0, 12));
  EXPECT_NE(a, b);
}

TEST(IdsTest, EventIdsAreUniqueWithinAMillisecond) {
  // 80 random bits after the time: 100,000 ids in one millisecond do not collide.
  const absl::Time t = absl::Now();
  std::set<std::string> seen;
  for (int i = 0; i < 100000; ++i) {
    ASSERT_TRUE(seen.insert(EventIdAt(t)).second);
  }
}

TEST(IdsTest, AnEventIdBeforeTheEpochCountsAsZero) {
  EXPECT_EQ(EventIdAt(absl::FromUnixMillis(-5)).substr(0, 12), "000000000000");
  EXPECT_EQ(EventIdAt(absl::UnixEpoch()).substr(0, 12), "000000000000");
}

TEST(IdsTest, EventIdTakesTheCurrentTime) {
  const int64_t before = absl::ToUnixMillis(absl::Now());
  const std::string id = EventId();
  const int64_t after = absl::ToUnixMillis(absl::Now());
  const int64_t stamp = std::stoll(id.substr(0, 12), nullptr, 16);
  EXPECT_GE(stamp, before);
  EXPECT_LE(stamp, after);
}

}  // namespace
}  // namespace podgate::runtime
