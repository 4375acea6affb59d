// EchoService for runtime tests: a callback bidi reactor that echoes every message, one write
// in flight at a time, and counts finished streams.
#pragma once

#include <atomic>

#include "echo.grpc.pb.h"

namespace podgate::testing {

class EchoServiceImpl final : public podgate::testing::v1::EchoService::CallbackService {
 public:
  grpc::ServerBidiReactor<v1::EchoRequest, v1::EchoResponse>* Echo(
      grpc::CallbackServerContext* context) override;

  // Streams that ended, and how many of them were cancelled rather than finished cleanly.
  std::atomic<int> finished{0};
  std::atomic<int> cancelled{0};
};

}  // namespace podgate::testing
