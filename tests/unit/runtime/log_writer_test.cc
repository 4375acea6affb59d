// The log's buffered writer over a real pipe: lines arrive whole and in order, a reader that
// stops reading never blocks the threads that log, what does not fit is dropped, counted and
// reported in a notice line once the pipe takes writes again, the buffer's bytes never pass
// the limit, Flush is bounded, and a closed pipe counts lines instead of ending the process.
#include "runtime/log_writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace podgate::log {
namespace {

class LineWriterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(pipe2(fds_, O_CLOEXEC), 0);
    // The smallest pipe the kernel gives, so that a few lines fill it.
    fcntl(fds_[1], F_SETPIPE_SZ, 4096);
    pipe_bytes_ = static_cast<size_t>(fcntl(fds_[1], F_GETPIPE_SZ));
  }
  void TearDown() override {
    if (fds_[0] >= 0) {
      close(fds_[0]);
    }
    close(fds_[1]);
  }

  // Reads what is in the pipe now (the read end non-blocking), or until `want` lines arrived.
  std::vector<std::string> ReadLines(size_t want, absl::Duration timeout = absl::Seconds(10)) {
    fcntl(fds_[0], F_SETFL, O_NONBLOCK);
    const absl::Time deadline = absl::Now() + timeout;
    char buf[65536];
    while (absl::Now() < deadline) {
      const ssize_t n = read(fds_[0], buf, sizeof(buf));
      if (n > 0) {
        partial_.append(buf, static_cast<size_t>(n));
      } else {
        if (CountLines() >= want) {
          break;
        }
        absl::SleepFor(absl::Milliseconds(1));
      }
    }
    std::vector<std::string> lines = absl::StrSplit(partial_, '\n');
    lines.pop_back();  // after the last newline
    return lines;
  }
  size_t CountLines() const {
    return static_cast<size_t>(std::count(partial_.begin(), partial_.end(), '\n'));
  }

  static std::string Line(int i) {
    return absl::StrCat("{\"n\":", i, ",\"pad\":\"", std::string(90, 'x'), "\"}");
  }

  int fds_[2] = {-1, -1};
  size_t pipe_bytes_ = 0;
  std::string partial_;
};

TEST_F(LineWriterTest, LinesArriveWholeAndInOrder) {
  LineWriter writer(fds_[1], LineWriter::kMinBufferBytes, "\"t\"");
  constexpr int kLines = 2000;
  std::thread reader([&] { ReadLines(kLines); });
  for (int i = 0; i < kLines; ++i) {
    ASSERT_TRUE(writer.Append(Line(i)));
    if (i % 100 == 0) {
      absl::SleepFor(absl::Milliseconds(10));  // room for the reader: nothing is dropped here
    }
  }
  EXPECT_TRUE(writer.Flush(absl::Seconds(10)));
  reader.join();
  std::vector<std::string> lines = absl::StrSplit(partial_, '\n');
  lines.pop_back();
  ASSERT_EQ(lines.size(), static_cast<size_t>(kLines));
  for (int i = 0; i < kLines; ++i) {
    ASSERT_EQ(lines[i], Line(i));
  }
  const WriterStats stats = writer.Stats();
  EXPECT_EQ(stats.lines_written, static_cast<uint64_t>(kLines));
  EXPECT_EQ(stats.lines_dropped, 0u);
  EXPECT_EQ(stats.buffer_bytes, 0u);
  EXPECT_EQ(stats.buffer_limit_bytes, LineWriter::kMinBufferBytes);
}

// Nobody reads: Append never waits; the buffer holds at most its limit; the rest is dropped and
// counted; once the pipe is read, the kept lines come in the order they were appended, and
// notice lines whose counts add up to the lines dropped. Lines appended while the thread had a
// batch in the pipe can be dropped and later ones kept again once that batch is written, so a
// drop can be reported in more than one notice, each after the lines queued when it was due.
TEST_F(LineWriterTest, AStalledReaderCostsDroppedLinesNeverABlockedWriter) {
  LineWriter writer(fds_[1], LineWriter::kMinBufferBytes, "\"policy\"");
  constexpr int kLines = 5000;  // about 500 KB: the pipe and the buffer hold a fraction
  std::vector<int> accepted;
  int first_dropped = -1;
  const absl::Time start = absl::Now();
  for (int i = 0; i < kLines; ++i) {
    if (writer.Append(Line(i))) {
      accepted.push_back(i);
    } else if (first_dropped < 0) {
      first_dropped = i;
    }
    ASSERT_LE(writer.Stats().buffer_bytes, LineWriter::kMinBufferBytes);
  }
  // Blocking on the pipe would have stopped here forever; 5000 appends take milliseconds.
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  ASSERT_GT(first_dropped, 0);
  EXPECT_FALSE(writer.Flush(absl::Milliseconds(100))) << "the reader is stalled";
  WriterStats stats = writer.Stats();
  const int dropped = kLines - static_cast<int>(accepted.size());
  EXPECT_EQ(stats.lines_dropped, static_cast<uint64_t>(dropped));
  EXPECT_GT(stats.buffer_bytes, LineWriter::kMinBufferBytes / 2);

  // The reader comes back: every kept line, in order, and the notices.
  std::vector<std::string> kept;
  int reported = 0;
  int notices = 0;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  size_t seen = 0;
  while ((kept.size() < accepted.size() || reported < dropped) && absl::Now() < deadline) {
    const std::vector<std::string> lines = ReadLines(seen + 1, absl::Milliseconds(200));
    for (; seen < lines.size(); ++seen) {
      const nlohmann::json line = nlohmann::json::parse(lines[seen]);
      if (line.contains("n")) {
        kept.push_back(lines[seen]);
        continue;
      }
      ++notices;
      EXPECT_EQ(line["level"], "warning");  // spdlog's name, as on every warn line
      EXPECT_EQ(line["service"], "policy");
      EXPECT_EQ(line["msg"], "log lines dropped");
      EXPECT_TRUE(line["ts"].get<std::string>().ends_with("Z"));
      EXPECT_GT(line["dropped"].get<int>(), 0);
      reported += line["dropped"].get<int>();
    }
  }
  ASSERT_EQ(kept.size(), accepted.size());
  for (size_t i = 0; i < accepted.size(); ++i) {
    ASSERT_EQ(kept[i], Line(accepted[i])) << "kept lines come whole, in the order appended";
  }
  EXPECT_EQ(reported, dropped) << "the notices add up to the lines dropped";
  EXPECT_GE(notices, 1);
  EXPECT_TRUE(writer.Flush(absl::Seconds(5)));
  stats = writer.Stats();
  EXPECT_EQ(stats.lines_written, static_cast<uint64_t>(accepted.size()));
  EXPECT_EQ(stats.buffer_bytes, 0u);

  // Afterwards lines flow again, and no further notice comes without new drops.
  ASSERT_TRUE(writer.Append(Line(kLines)));
  EXPECT_TRUE(writer.Flush(absl::Seconds(5)));
  const std::vector<std::string> lines = ReadLines(seen + 1);
  ASSERT_EQ(lines.size(), seen + 1);
  EXPECT_EQ(lines.back(), Line(kLines));
}

// A line longer than the whole buffer is dropped and counted, never cut.
TEST_F(LineWriterTest, ALineLongerThanTheBufferIsDropped) {
  LineWriter writer(fds_[1], LineWriter::kMinBufferBytes, "\"t\"");
  EXPECT_FALSE(writer.Append(std::string(LineWriter::kMinBufferBytes, 'y')));
  EXPECT_TRUE(writer.Append("{\"after\":1}"));
  // The notice goes out with whatever was queued when the writer woke for it: before the next
  // line or after it, depending on when the writer's thread ran. Either way both come whole,
  // and no part of the long line does.
  std::vector<std::string> lines = ReadLines(2);
  ASSERT_EQ(lines.size(), 2u);
  const bool notice_first = lines[0].find("\"dropped\"") != std::string::npos;
  const std::string& after = notice_first ? lines[1] : lines[0];
  const std::string& notice = notice_first ? lines[0] : lines[1];
  EXPECT_EQ(after, "{\"after\":1}");
  const nlohmann::json parsed = nlohmann::json::parse(notice, nullptr, false);
  ASSERT_TRUE(parsed.is_object()) << notice;
  EXPECT_EQ(parsed["msg"], "log lines dropped");
  EXPECT_EQ(parsed["dropped"], 1);
  EXPECT_EQ(writer.Stats().lines_dropped, 1u);
}

// stderr closed under the service (the reader is gone): writes fail with EPIPE, not SIGPIPE,
// and the lines are counted as dropped; appending goes on.
TEST_F(LineWriterTest, AClosedPipeCountsLinesAndDoesNotKillTheProcess) {
  close(fds_[0]);
  fds_[0] = -1;
  LineWriter writer(fds_[1], LineWriter::kMinBufferBytes, "\"t\"");
  for (int i = 0; i < 10; ++i) {
    EXPECT_TRUE(writer.Append(Line(i)));
  }
  EXPECT_TRUE(writer.Flush(absl::Seconds(5)));
  const WriterStats stats = writer.Stats();
  EXPECT_EQ(stats.lines_written, 0u);
  EXPECT_EQ(stats.lines_dropped, 10u);
  EXPECT_EQ(stats.buffer_bytes, 0u);
}

// Many threads logging at once: every line whole, none lost while the reader keeps up.
TEST_F(LineWriterTest, ConcurrentAppendsStayWhole) {
  LineWriter writer(fds_[1], LineWriter::kDefaultBufferBytes, "\"t\"");
  constexpr int kThreads = 4;
  constexpr int kPerThread = 500;
  std::thread reader([&] { ReadLines(kThreads * kPerThread); });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&writer, t] {
      for (int i = 0; i < kPerThread; ++i) {
        writer.Append(Line(t * kPerThread + i));
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_TRUE(writer.Flush(absl::Seconds(10)));
  reader.join();
  std::vector<std::string> lines = absl::StrSplit(partial_, '\n');
  lines.pop_back();
  EXPECT_EQ(lines.size() + writer.Stats().lines_dropped,
            static_cast<size_t>(kThreads * kPerThread));
  std::vector<bool> seen(kThreads * kPerThread);
  for (const std::string& line : lines) {
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    if (j.contains("n")) {
      const int n = j["n"];
      EXPECT_FALSE(seen[n]);
      seen[n] = true;
    }
  }
}

}  // namespace
}  // namespace podgate::log
