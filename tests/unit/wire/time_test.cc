#include "wire/time.h"

#include "gtest/gtest.h"

namespace podgate::wire {
namespace {

TEST(TimeTest, TimestampRoundTripsToTheNanosecond) {
  const absl::Time t = absl::FromUnixSeconds(1'800'000'000) + absl::Nanoseconds(123456789);
  const google::protobuf::Timestamp ts = ToProtoTimestamp(t);
  EXPECT_EQ(ts.seconds(), 1'800'000'000);
  EXPECT_EQ(ts.nanos(), 123456789);
  EXPECT_EQ(FromProtoTimestamp(ts), t);
}

TEST(TimeTest, TimestampBeforeTheEpochKeepsNanosPositive) {
  const absl::Time t = absl::FromUnixSeconds(0) - absl::Milliseconds(1);
  const google::protobuf::Timestamp ts = ToProtoTimestamp(t);
  EXPECT_EQ(ts.seconds(), -1);
  EXPECT_EQ(ts.nanos(), 999000000);
  EXPECT_EQ(FromProtoTimestamp(ts), t);
}

TEST(TimeTest, TimestampOutsideItsRangeIsClamped) {
  EXPECT_EQ(ToProtoTimestamp(absl::InfiniteFuture()).seconds(), 253402300799);
  EXPECT_EQ(ToProtoTimestamp(absl::InfiniteFuture()).nanos(), 999999999);
  EXPECT_EQ(ToProtoTimestamp(absl::InfinitePast()).seconds(), -62135596800);
  EXPECT_EQ(ToProtoTimestamp(absl::InfinitePast()).nanos(), 0);
}

TEST(TimeTest, DurationKeepsOneSign) {
  google::protobuf::Duration d = ToProtoDuration(absl::Milliseconds(1500));
  EXPECT_EQ(d.seconds(), 1);
  EXPECT_EQ(d.nanos(), 500000000);
  d = ToProtoDuration(-absl::Milliseconds(1500));
  EXPECT_EQ(d.seconds(), -1);
  EXPECT_EQ(d.nanos(), -500000000);
  EXPECT_EQ(FromProtoDuration(d), -absl::Milliseconds(1500));
  EXPECT_EQ(FromProtoDuration(ToProtoDuration(absl::Nanoseconds(7))), absl::Nanoseconds(7));
}

TEST(TimeTest, InfiniteDurationIsClamped) {
  EXPECT_EQ(ToProtoDuration(absl::InfiniteDuration()).seconds(), 315576000000);
  EXPECT_EQ(ToProtoDuration(-absl::InfiniteDuration()).seconds(), -315576000000);
}

}  // namespace
}  // namespace podgate::wire
