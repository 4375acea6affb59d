#include "runtime/log.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace podgate::log {
namespace {

void Capture(std::string_view line, void* arg) {
  static_cast<std::vector<std::string>*>(arg)->emplace_back(line);
}

class LogTest : public ::testing::Test {
 protected:
  void SetUp() override { InitForTest("unit", Level::kInfo, &Capture, &lines_); }
  void TearDown() override { Init("unit", Level::kInfo); }
  std::vector<std::string> lines_;
};

TEST_F(LogTest, LineIsJsonWithServiceLevelTimeAndFields) {
  Info("session open", {{"session_id", "s-1"}, {"commands", 3}, {"tty", false}});
  ASSERT_EQ(lines_.size(), 1u);
  const nlohmann::json j = nlohmann::json::parse(lines_[0]);
  EXPECT_EQ(j["service"], "unit");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["msg"], "session open");
  EXPECT_EQ(j["session_id"], "s-1");
  EXPECT_EQ(j["commands"], 3);
  EXPECT_EQ(j["tty"], false);
  const std::string ts = j["ts"];
  EXPECT_EQ(ts.size(), 24u) << ts;  // 2026-11-28T04:33:01.123Z
  EXPECT_EQ(ts.back(), 'Z');
}

TEST_F(LogTest, LevelFilters) {
  Debug("hidden");
  Warn("shown");
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(lines_[0])["level"], "warning");
}

TEST_F(LogTest, HostileTextStaysOneValidJsonLine) {
  const std::string hostile = std::string("a\"b\\c\nd\re\tf\x01g\x7f") + "\xff\xc3(" + "é";
  Error(hostile, {{"line", hostile}});
  ASSERT_EQ(lines_.size(), 1u);
  EXPECT_EQ(lines_[0].find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(lines_[0]);
  EXPECT_EQ(j["msg"], "a\"b\\c\nd\re\tf\x01g\x7f\xef\xbf\xbd\xef\xbf\xbd(é");
  EXPECT_EQ(j["line"], j["msg"]);
}

TEST(LogLevelTest, ParseLevel) {
  Level level;
  EXPECT_TRUE(ParseLevel("debug", &level).ok());
  EXPECT_EQ(level, Level::kDebug);
  EXPECT_TRUE(ParseLevel("error", &level).ok());
  EXPECT_EQ(level, Level::kError);
  absl::Status s = ParseLevel("loud", &level);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), ::testing::HasSubstr("loud"));
}

TEST(JsonStringTest, OverlongAndSurrogateEncodingsAreReplaced) {
  std::string out;
  AppendJsonString("\xc0\xaf|\xed\xa0\x80|\xf4\x90\x80\x80", &out);
  EXPECT_EQ(out,
            "\"\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd|\\ufffd\\ufffd\\ufffd\\ufffd\"");
}

}  // namespace
}  // namespace podgate::log
