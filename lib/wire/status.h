// grpc::Status <-> absl::Status, keeping the code and the message. The two enums share their
// numbers (both are google.rpc.Code), so the conversion is exact both ways.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "grpcpp/support/status.h"

namespace podgate::wire {

grpc::Status ToGrpcStatus(const absl::Status& status);

// `context`, when given, is put before the message ("query: deadline exceeded").
absl::Status ToAbslStatus(const grpc::Status& status, absl::string_view context = "");

// The canonical name of a gRPC code ("PERMISSION_DENIED"), as absl::StatusCodeToString gives it.
std::string StatusCodeName(grpc::StatusCode code);
// The same for a code carried as a number (podgate.common.v1.Status.code); an unknown number
// gives "" (as absl::StatusCodeToString does).
std::string StatusCodeName(int code);

}  // namespace podgate::wire
