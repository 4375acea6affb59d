#include "wire/time.h"

#include <algorithm>
#include <cstdint>

namespace podgate::wire {
namespace {

// The ranges google/protobuf/timestamp.proto and duration.proto define.
constexpr int64_t kMinTimestampSeconds = -62135596800;  // 0001-01-01T00:00:00Z
constexpr int64_t kMaxTimestampSeconds = 253402300799;  // 9999-12-31T23:59:59Z
constexpr int64_t kMaxDurationSeconds = 315576000000;   // 10,000 years

}  // namespace

google::protobuf::Timestamp ToProtoTimestamp(absl::Time t) {
  google::protobuf::Timestamp out;
  if (t < absl::FromUnixSeconds(kMinTimestampSeconds)) {
    out.set_seconds(kMinTimestampSeconds);
    return out;
  }
  if (t >= absl::FromUnixSeconds(kMaxTimestampSeconds + 1)) {
    out.set_seconds(kMaxTimestampSeconds);
    out.set_nanos(999999999);
    return out;
  }
  const int64_t s = absl::ToUnixSeconds(t);
  out.set_seconds(s);
  out.set_nanos(static_cast<int32_t>((t - absl::FromUnixSeconds(s)) / absl::Nanoseconds(1)));
  return out;
}

absl::Time FromProtoTimestamp(const google::protobuf::Timestamp& t) {
  return absl::FromUnixSeconds(t.seconds()) + absl::Nanoseconds(t.nanos());
}

google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  google::protobuf::Duration out;
  const absl::Duration max = absl::Seconds(kMaxDurationSeconds);
  if (d >= max || d <= -max) {
    out.set_seconds(d > absl::ZeroDuration() ? kMaxDurationSeconds : -kMaxDurationSeconds);
    return out;
  }
  const int64_t s = absl::IDivDuration(d, absl::Seconds(1), &d);
  out.set_seconds(s);
  out.set_nanos(static_cast<int32_t>(d / absl::Nanoseconds(1)));
  return out;
}

absl::Duration FromProtoDuration(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

}  // namespace podgate::wire
