// google.protobuf.Timestamp / Duration <-> absl::Time / Duration.
#pragma once

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/timestamp.pb.h"

namespace podgate::wire {

// Nanoseconds are always in [0, 1e9) (seconds round toward the past). Times outside what a
// Timestamp can hold (0001-01-01 to 9999-12-31, infinities included) are clamped to its range.
google::protobuf::Timestamp ToProtoTimestamp(absl::Time t);
absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t);

// Seconds and nanoseconds carry the same sign, as the Duration type requires. Infinite durations
// are clamped to the largest a Duration holds (±10,000 years).
google::protobuf::Duration ToProtoDuration(absl::Duration d);
absl::Duration FromProtoDuration(const google::protobuf::Duration& d);

}  // namespace podgate::wire
