#include "wire/status.h"

#include "gtest/gtest.h"

namespace podgate::wire {
namespace {

TEST(StatusTest, AbslToGrpcKeepsCodeAndMessage) {
  const grpc::Status s = ToGrpcStatus(absl::PermissionDeniedError("no rule"));
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), "no rule");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
}

TEST(StatusTest, GrpcToAbslKeepsCodeAndMessageWithOptionalContext) {
  const grpc::Status s(grpc::StatusCode::DEADLINE_EXCEEDED, "too slow");
  EXPECT_EQ(ToAbslStatus(s), absl::DeadlineExceededError("too slow"));
  EXPECT_EQ(ToAbslStatus(s, "query"), absl::DeadlineExceededError("query: too slow"));
  EXPECT_TRUE(ToAbslStatus(grpc::Status::OK, "query").ok());
}

TEST(StatusTest, EveryCodeRoundTrips) {
  for (int code = 0; code <= 16; ++code) {
    const absl::Status a(static_cast<absl::StatusCode>(code), "m");
    EXPECT_EQ(ToAbslStatus(ToGrpcStatus(a)).code(), a.code()) << code;
  }
}

TEST(StatusTest, ACodeGrpcDoesNotNameIsSentAsUnknownWithItsMessage) {
  for (int code : {-1, 17, 99}) {
    const grpc::Status s = ToGrpcStatus(absl::Status(static_cast<absl::StatusCode>(code), "odd"));
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNKNOWN) << code;
    EXPECT_EQ(s.error_message(), "odd") << code;
  }
}

TEST(StatusTest, CodeNames) {
  EXPECT_EQ(StatusCodeName(grpc::StatusCode::UNAVAILABLE), "UNAVAILABLE");
  EXPECT_EQ(StatusCodeName(7), "PERMISSION_DENIED");
  EXPECT_EQ(StatusCodeName(99), "");
}

}  // namespace
}  // namespace podgate::wire
