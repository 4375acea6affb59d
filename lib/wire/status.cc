#include "wire/status.h"

#include "absl/strings/str_cat.h"

namespace podgate::wire {

grpc::Status ToGrpcStatus(const absl::Status& status) {
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

absl::Status ToAbslStatus(const grpc::Status& status, absl::string_view context) {
  if (status.ok()) {
    return absl::OkStatus();
  }
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      context.empty() ? status.error_message()
                                      : absl::StrCat(context, ": ", status.error_message()));
}

std::string StatusCodeName(grpc::StatusCode code) { return StatusCodeName(static_cast<int>(code)); }

std::string StatusCodeName(int code) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

}  // namespace podgate::wire
