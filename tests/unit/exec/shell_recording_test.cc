// The asciicast recording of a shell session: its header, one JSON event a line, chunks cut by
// size and by age, numbered from 0.
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "exec/shell_run.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace podgate::exec {
namespace {

const absl::Time kT0 = absl::FromUnixSeconds(1700000000);

std::vector<nlohmann::json> Lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    out.push_back(nlohmann::json::parse(std::string(line)));
  }
  return out;
}

TEST(AsciicastRecordingTest, HeaderThenOneEventALine) {
  AsciicastRecording r(1 << 20, absl::Seconds(5));
  EXPECT_TRUE(r.empty());
  r.Start(120, 40, kT0, "app/api-0/main");
  EXPECT_FALSE(r.Add(0.5, 'i', "ls\r", kT0 + absl::Seconds(1)));
  EXPECT_FALSE(r.Add(0.75, 'o', "a b\r\n", kT0 + absl::Seconds(1)));
  EXPECT_FALSE(r.Add(1.0, 'r', "100x30", kT0 + absl::Seconds(1)));
  auto [seq, text] = r.TakeChunk(kT0 + absl::Seconds(1));
  EXPECT_EQ(seq, 0);
  EXPECT_TRUE(r.empty());
  std::vector<nlohmann::json> lines = Lines(text);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[0], (nlohmann::json{{"version", 2},
                                      {"width", 120},
                                      {"height", 40},
                                      {"timestamp", 1700000000},
                                      {"title", "app/api-0/main"}}));
  EXPECT_EQ(lines[1], (nlohmann::json{0.5, "i", "ls\r"}));
  EXPECT_EQ(lines[2], (nlohmann::json{0.75, "o", "a b\r\n"}));
  EXPECT_EQ(lines[3], (nlohmann::json{1.0, "r", "100x30"}));
}

// Input that reaches the recording before its header (a session's threads racing `ready`) is
// kept, after the header, and no chunk is due before the header is there.
TEST(AsciicastRecordingTest, EventsAddedBeforeStartFollowTheHeader) {
  AsciicastRecording r(10, absl::Seconds(5));
  EXPECT_FALSE(r.Add(0.1, 'i', "a long line typed early", kT0 + absl::Seconds(9)));
  r.Start(80, 24, kT0 + absl::Seconds(9), "t");
  EXPECT_TRUE(r.Add(0.2, 'i', "b", kT0 + absl::Seconds(9)));
  auto [seq, text] = r.TakeChunk(kT0 + absl::Seconds(9));
  EXPECT_EQ(seq, 0);
  std::vector<nlohmann::json> lines = Lines(text);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0]["version"], 2);
  EXPECT_EQ(lines[1], (nlohmann::json{0.1, "i", "a long line typed early"}));
  EXPECT_EQ(lines[2], (nlohmann::json{0.2, "i", "b"}));
}

TEST(AsciicastRecordingTest, InvalidUtf8IsReplacedNotDropped) {
  AsciicastRecording r(1 << 20, absl::Seconds(5));
  r.Start(80, 24, kT0, "t");
  r.Add(0.1, 'o',
        std::string("a\xff"
                    "b"),
        kT0);
  std::vector<nlohmann::json> lines = Lines(r.TakeChunk(kT0).second);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1][2],
            "a\xEF\xBF\xBD"
            "b");
}

TEST(AsciicastRecordingTest, AChunkIsDueWhenBigOrOld) {
  AsciicastRecording r(200, absl::Seconds(5));
  r.Start(80, 24, kT0, "t");
  EXPECT_FALSE(r.Add(0.1, 'o', "x", kT0 + absl::Seconds(1)));
  EXPECT_TRUE(r.Add(0.2, 'o', std::string(200, 'y'), kT0 + absl::Seconds(1)));  // big
  EXPECT_EQ(r.TakeChunk(kT0 + absl::Seconds(1)).first, 0);
  EXPECT_FALSE(r.Add(1.0, 'o', "z", kT0 + absl::Seconds(2)));
  EXPECT_TRUE(r.Add(6.0, 'o', "z", kT0 + absl::Seconds(6)));  // 5 s after the last chunk
  auto [seq, text] = r.TakeChunk(kT0 + absl::Seconds(6));
  EXPECT_EQ(seq, 1);
  // A later chunk carries events only (the header is in chunk 0).
  std::vector<nlohmann::json> lines = Lines(text);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], (nlohmann::json{1.0, "o", "z"}));
  EXPECT_EQ(r.TakeChunk(kT0 + absl::Seconds(7)).first, 2);
}

}  // namespace
}  // namespace podgate::exec
