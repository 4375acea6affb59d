// runtime/trace.h: the W3C traceparent parser and formatter, against the specification's
// examples and each way a value can be wrong.
#include "runtime/trace.h"

#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::runtime {
namespace {

using ::testing::HasSubstr;

constexpr char kTraceId[] = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr char kParentId[] = "00f067aa0ba902b7";
constexpr char kValid[] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

std::string Error(std::string_view value) {
  absl::StatusOr<TraceContext> t = ParseTraceparent(value);
  EXPECT_FALSE(t.ok()) << value;
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(t.status().message());
}

TEST(TraceparentTest, ParsesTheSpecificationsExample) {
  absl::StatusOr<TraceContext> t = ParseTraceparent(kValid);
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->trace_id, kTraceId);
  EXPECT_EQ(t->span_id, kParentId);
  EXPECT_EQ(t->flags, 1);
  EXPECT_TRUE(t->valid());
  EXPECT_EQ(t->Header(), kValid);
}

TEST(TraceparentTest, ParsesUnsampledFlagsAndKeepsOnlyTheSampledBitWhenFormatting) {
  absl::StatusOr<TraceContext> t =
      ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->flags, 0);
  absl::StatusOr<TraceContext> other =
      ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-ff");
  ASSERT_TRUE(other.ok());
  EXPECT_EQ(other->flags, 0xff);
  EXPECT_EQ(other->Header(), kValid);  // reserved bits are zeroed on propagation
}

TEST(TraceparentTest, RefusesUppercaseHex) {
  EXPECT_THAT(Error("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
              HasSubstr("trace-id is not 32 lowercase hex"));
  EXPECT_THAT(Error("00-4bf92f3577b34da6a3ce929d0e0e4736-00F067AA0BA902B7-01"),
              HasSubstr("parent-id is not 16 lowercase hex"));
  EXPECT_THAT(Error("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0A"),
              HasSubstr("trace-flags"));
  EXPECT_THAT(Error("0A-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
              HasSubstr("version"));
}

TEST(TraceparentTest, RefusesWrongLengths) {
  EXPECT_THAT(Error(""), HasSubstr("version"));
  EXPECT_THAT(Error("00"), HasSubstr("too short"));
  EXPECT_THAT(Error("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01"),
              HasSubstr("too short"));
  // A trace-id one digit longer: 56 characters, which version 00 does not allow.
  EXPECT_THAT(Error("00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01"),
              HasSubstr("version 00 is 55 characters"));
  EXPECT_THAT(Error(std::string(kValid) + "-extra"), HasSubstr("version 00 is 55 characters"));
  // Same total length, fields shifted: separators out of place.
  EXPECT_THAT(Error("00-4bf92f3577b34da6a3ce929d0e0e47366-0f067aa0ba902b7-01"),
              HasSubstr("separated"));
  EXPECT_THAT(Error("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b77-1"),
              HasSubstr("separated"));
  EXPECT_THAT(Error(std::string(kMaxTraceparentLength + 1, 'a')), HasSubstr("longer than 256"));
}

TEST(TraceparentTest, RefusesAllZeroIds) {
  EXPECT_THAT(Error("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
              HasSubstr("trace-id is all zeros"));
  EXPECT_THAT(Error("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"),
              HasSubstr("parent-id is all zeros"));
}

TEST(TraceparentTest, RefusesVersionFf) {
  EXPECT_THAT(Error("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
              HasSubstr("version ff is invalid"));
}

TEST(TraceparentTest, ReadsTheFirstFourFieldsOfAFutureVersion) {
  absl::StatusOr<TraceContext> exact =
      ParseTraceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  ASSERT_TRUE(exact.ok()) << exact.status();
  EXPECT_EQ(exact->trace_id, kTraceId);
  absl::StatusOr<TraceContext> longer = ParseTraceparent(
      "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-the-future-says");
  ASSERT_TRUE(longer.ok()) << longer.status();
  EXPECT_EQ(longer->span_id, kParentId);
  // Formatting always speaks version 00.
  EXPECT_EQ(longer->Header(), kValid);
  EXPECT_THAT(Error("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"),
              HasSubstr("must follow a '-'"));
}

TEST(TraceparentTest, RefusesGarbage) {
  for (const char* garbage :
       {"hello", "00-hello", "--------------------------------------------------------",
        "00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-zz",
        " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e473\xc3\xa9-00f067aa0ba902b7-01"}) {
    EXPECT_FALSE(ParseTraceparent(garbage).ok()) << garbage;
  }
  EXPECT_FALSE(ParseTraceparent(
                   std::string_view("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa\0ba902b7-01", 55))
                   .ok());
}

TEST(TraceContextTest, NewTracesAreValidRandomAndFormatBack) {
  std::set<std::string> trace_ids;
  for (int i = 0; i < 50; ++i) {
    TraceContext t = NewTrace();
    ASSERT_TRUE(t.valid());
    EXPECT_EQ(t.flags, 0);
    trace_ids.insert(t.trace_id);
    absl::StatusOr<TraceContext> back = ParseTraceparent(t.Header());
    ASSERT_TRUE(back.ok()) << t.Header();
    EXPECT_EQ(*back, t);
  }
  EXPECT_EQ(trace_ids.size(), 50u);
  EXPECT_FALSE(TraceContext{}.valid());
}

// The ids come from a per-thread pool of random bytes: many more ids than one pool holds, on
// several threads at once, are all distinct and valid.
TEST(TraceContextTest, IdsStayDistinctAcrossPoolRefillsAndThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;  // 2,000 x 24 bytes: about 94 pools of 512 bytes each
  std::vector<std::vector<TraceContext>> made(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&made, t] {
      for (int i = 0; i < kPerThread; ++i) {
        made[t].push_back(NewTrace());
      }
    });
  }
  for (auto& thread : threads) {
    thread.join();
  }
  std::set<std::string> trace_ids;
  std::set<std::string> span_ids;
  for (const auto& list : made) {
    for (const TraceContext& t : list) {
      ASSERT_TRUE(t.valid()) << t.Header();
      trace_ids.insert(t.trace_id);
      span_ids.insert(t.span_id);
    }
  }
  EXPECT_EQ(trace_ids.size(), static_cast<size_t>(kThreads * kPerThread));
  EXPECT_EQ(span_ids.size(), static_cast<size_t>(kThreads * kPerThread));
}

// A forked child holds a copy of its parent's pool; it must not hand out the ids the parent
// hands out next.
TEST(TraceContextTest, AForkedChildDoesNotRepeatItsParentsNextIds) {
  NewTrace();  // this thread's pool now holds the bytes of the next ids
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    const std::string ids = NewTrace().trace_id + NewSpanId();
    const bool written = write(fds[1], ids.data(), ids.size()) == static_cast<ssize_t>(ids.size());
    _exit(written ? 0 : 1);
  }
  close(fds[1]);
  std::string from_child(48, '\0');
  size_t got = 0;
  while (got < from_child.size()) {
    const ssize_t n = read(fds[0], from_child.data() + got, from_child.size() - got);
    if (n <= 0) {
      break;
    }
    got += static_cast<size_t>(n);
  }
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  ASSERT_EQ(got, from_child.size());
  const std::string parent = NewTrace().trace_id + NewSpanId();
  EXPECT_NE(from_child.substr(0, 32), parent.substr(0, 32));
  EXPECT_NE(from_child.substr(32), parent.substr(32));
  EXPECT_TRUE(IsTraceId(from_child.substr(0, 32))) << from_child;
}

TEST(TraceContextTest, AChildSpanKeepsTheTraceAndTheSampledFlag) {
  TraceContext parent = *ParseTraceparent(kValid);
  TraceContext child = ChildSpan(parent);
  EXPECT_EQ(child.trace_id, kTraceId);
  EXPECT_NE(child.span_id, kParentId);
  EXPECT_TRUE(child.valid());
  EXPECT_EQ(child.flags, 1);
}

TEST(TraceContextTest, ContinueOrStartTakesAValidValueAndReplacesOthers) {
  std::string error = "stale";
  TraceContext taken = ContinueOrStart(kValid, &error);
  EXPECT_EQ(taken.trace_id, kTraceId);
  EXPECT_NE(taken.span_id, kParentId);
  EXPECT_EQ(error, "");

  TraceContext replaced =
      ContinueOrStart("00-00000000000000000000000000000000-00f067aa0ba902b7-01", &error);
  EXPECT_TRUE(replaced.valid());
  EXPECT_NE(replaced.trace_id, kTraceId);
  EXPECT_THAT(error, HasSubstr("all zeros"));

  TraceContext started = ContinueOrStart("", &error);
  EXPECT_TRUE(started.valid());
  EXPECT_EQ(error, "");
}

TEST(TraceContextTest, IsTraceIdTakesOnlyWellFormedIds) {
  EXPECT_TRUE(IsTraceId(kTraceId));
  EXPECT_FALSE(IsTraceId(""));
  EXPECT_FALSE(IsTraceId(std::string(32, '0')));
  EXPECT_FALSE(IsTraceId("4BF92F3577B34DA6A3CE929D0E0E4736"));
  EXPECT_FALSE(IsTraceId("4bf92f3577b34da6a3ce929d0e0e473"));
  EXPECT_FALSE(IsTraceId("4bf92f3577b34da6a3ce929d0e0e4736' OR 1=1"));
}

}  // namespace
}  // namespace podgate::runtime
