// Calls grpc.health.v1.Health/Check on a podgate server.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpc/health/v1/health.pb.h"
#include "grpcpp/channel.h"

namespace podgate::testing {

// The serving status of `service` ("" for the whole server) on `channel`.
absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> CheckHealth(
    const std::shared_ptr<grpc::Channel>& channel, const std::string& service = "");

// A plaintext channel to 127.0.0.1:<port>.
std::shared_ptr<grpc::Channel> LocalChannel(int port);

}  // namespace podgate::testing
