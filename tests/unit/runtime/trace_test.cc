// runtime/trace.h: the W3C traceparent parser and formatter, against the specification's
// examples and each way a value can be wrong.
#include "runtime/trace.h"

#include <set>
#include <string>

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
